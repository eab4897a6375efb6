package cluster_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestCheckName(t *testing.T) {
	cases := []struct {
		name, want string // want: "" for accepted, else a part of the error
	}{
		{"db1", ""},
		{"shop-eu_1.a", ""},
		{"9lives", ""},
		{strings.Repeat("a", 64), ""},
		{"", "--cluster: required"},
		{strings.Repeat("a", 65), "longer than 64"},
		{"BAD NAME!", `--cluster "BAD NAME!": use letters`},
		{"-db1", "starting with a letter or digit"},
		{".hidden", "starting with a letter or digit"},
		{"a/b", "use letters"},
		{"é", "use letters"},
	}
	for _, tc := range cases {
		err := cluster.CheckName("--cluster", tc.name)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckName(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	got := cluster.Names([]string{"/baton/b/primary", "/baton/a/nodes/db1", "/baton/b/history/1", "/baton/c", "/other/x/y", "/baton//z"})
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
}

func TestListAndExists(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	ctx := context.Background()
	for _, k := range []string{"/baton/shop/primary", "/baton/shop/nodes/db1", "/baton/tour/policy", "/other/x/y"} {
		if _, err := cli.Put(ctx, k, "{}"); err != nil {
			t.Fatal(err)
		}
	}
	names, err := cluster.List(ctx, cli)
	if err != nil || !slices.Equal(names, []string{"shop", "tour"}) {
		t.Fatalf("List = %v, %v; want [shop tour]", names, err)
	}
	for name, want := range map[string]bool{"shop": true, "tour": true, "tourz": false, "sho": false, "x": false} {
		got, err := cluster.NewStore(cli, name).Exists(ctx)
		if err != nil || got != want {
			t.Errorf("Exists(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
}
