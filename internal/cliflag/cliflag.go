// Package cliflag holds what Baton's two binaries (baton, baton-lab) share in how
// they answer bad command lines. It never touches a server or etcd.
package cliflag

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// OneLineUsageErrors makes a bad flag or flag value, of cmds and their subcommands,
// one line on stderr and exit status code, instead of urfave/cli's usage text on
// stdout.
func OneLineUsageErrors(prefix string, cmds []*cli.Command, code int) {
	for _, c := range cmds {
		name := prefix + " " + c.Name
		if c.OnUsageError == nil {
			c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
				return cli.Exit(fmt.Sprintf("%s: %v (see `%s --help`)", name, err, name), code)
			}
		}
		OneLineUsageErrors(name, c.Subcommands, code)
	}
}

// UnknownCommands makes an unknown command, of app or of a command that has
// subcommands, bad input: exit status code and one line naming the commands there
// are, instead of urfave/cli's "No help topic" and exit status 3. Without a command,
// the help is shown, as before. Commands that have their own action keep it.
func UnknownCommands(app *cli.App, code int) {
	if app.Action == nil {
		app.Action = unknownCommand(app.Name, app.Commands, code, cli.ShowAppHelp)
	}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := prefix + " " + c.Name
			if len(c.Subcommands) > 0 && c.Action == nil {
				c.Action = unknownCommand(name, c.Subcommands, code, cli.ShowSubcommandHelp)
			}
			walk(name, c.Subcommands)
		}
	}
	walk(app.Name, app.Commands)
}

// unknownCommand is the action of name, whose commands are cmds: help without an
// argument, bad input with one (it is not one of cmds, or urfave/cli would have run
// that).
func unknownCommand(name string, cmds []*cli.Command, code int, help cli.ActionFunc) cli.ActionFunc {
	return func(cctx *cli.Context) error {
		if !cctx.Args().Present() {
			return help(cctx)
		}
		var names []string
		for _, c := range cmds {
			if !c.Hidden {
				names = append(names, c.Name)
			}
		}
		typed := cctx.Args().First()
		hint := ""
		if near := nearest(typed, names); near != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", near)
		}
		return cli.Exit(fmt.Sprintf("%s: unknown command %q%s; the commands are: %s (see `%s --help`)",
			name, typed, hint, strings.Join(names, ", "), name), code)
	}
}

// nearest is the one name within two edits of typed (a typo), "" when none or more
// than one is.
func nearest(typed string, names []string) string {
	found := ""
	for _, n := range names {
		if editDistance(typed, n) <= 2 {
			if found != "" {
				return ""
			}
			found = n
		}
	}
	return found
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Main runs app on the process's arguments and exits: a bad flag is one line (see
// OneLineUsageErrors), so is an unknown command (UnknownCommands), an error is one
// line "NAME: error" on stderr, and the exit status is the error's own (cli.Exit) or
// badInput.
func Main(app *cli.App, badInput int) {
	OneLineUsageErrors(app.Name, app.Commands, badInput)
	UnknownCommands(app, badInput)
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		code := badInput
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}
