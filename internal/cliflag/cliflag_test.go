package cliflag

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestUnknownCommands(t *testing.T) {
	newApp := func(out *bytes.Buffer) *cli.App {
		noop := func(*cli.Context) error { return nil }
		app := &cli.App{Name: "baton", Writer: out, ErrWriter: out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{
				{Name: "status", Action: noop},
				{Name: "policy", Subcommands: []*cli.Command{{Name: "show", Action: noop}, {Name: "apply", Action: noop}}},
				{Name: "secret", Hidden: true, Action: noop},
			}}
		UnknownCommands(app, 2)
		return app
	}
	cases := []struct {
		args    []string
		code    int    // 0: no error
		want    string // in the error, or in the help printed
		notWant string
	}{
		{[]string{"baton", "nosuch"}, 2, `baton: unknown command "nosuch"; the commands are: status, policy (see ` + "`baton --help`)", "secret"},
		{[]string{"baton", "policy", "nosuch"}, 2, `baton policy: unknown command "nosuch"; the commands are: show, apply`, ""},
		{[]string{"baton"}, 0, "COMMANDS", "unknown"},
		{[]string{"baton", "policy"}, 0, "show", "unknown"},
		{[]string{"baton", "status"}, 0, "", "unknown"},
		{[]string{"baton", "policy", "show"}, 0, "", "unknown"},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		err := newApp(&out).Run(tc.args)
		code := 0
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		} else if err != nil {
			code = -1
		}
		text := out.String()
		if err != nil {
			text += err.Error()
		}
		if code != tc.code || !strings.Contains(text, tc.want) || (tc.notWant != "" && strings.Contains(text, tc.notWant)) {
			t.Errorf("%v: exit status %d, said %q; want %d, with %q and without %q", tc.args, code, text, tc.code, tc.want, tc.notWant)
		}
	}
}

func TestNearest(t *testing.T) {
	names := []string{"status", "switchover", "failover", "pause", "resume"}
	for typed, want := range map[string]string{"swichover": "switchover", "statsu": "status", "failovr": "failover",
		"xyz": "", "paus": "pause", "resum": "resume"} {
		if got := nearest(typed, names); got != want {
			t.Errorf("nearest(%q) = %q, want %q", typed, got, want)
		}
	}
	if got := nearest("ab", []string{"ax", "ay"}); got != "" {
		t.Errorf("two names as near: %q, want none", got)
	}
}
