package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
)

func TestRebuildConfigValidate(t *testing.T) {
	ok := RebuildConfig{SizeMiB: 1024, Baseline: 30 * time.Second, Name: "rb-bench", Bin: lab.Binaries{Baton: "/b", Lab: "/l"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(*RebuildConfig)
		want string
	}{
		{func(c *RebuildConfig) { c.SizeMiB = 8 }, "size"},
		{func(c *RebuildConfig) { c.Baseline = time.Second }, "baseline"},
		{func(c *RebuildConfig) { c.Name = "" }, "name"},
		{func(c *RebuildConfig) { c.Bin.Lab = "" }, "bin"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %s", c, err, tc.want)
		}
	}
}

func TestParseMiB(t *testing.T) {
	for in, want := range map[string]int{"16MiB": 16, "1GiB": 1024, " 2GiB ": 2048} {
		if got, err := ParseMiB(in); err != nil || got != want {
			t.Errorf("ParseMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1", "1.5GiB", "0MiB", "-1GiB", "1GB", "MiB"} {
		if got, err := ParseMiB(in); err == nil {
			t.Errorf("ParseMiB(%q) = %d, want an error", in, got)
		}
	}
}
