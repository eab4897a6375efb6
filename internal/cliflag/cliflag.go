// Package cliflag holds what Baton's two binaries (baton, baton-lab) share in how
// they answer bad command lines. It never touches a server or etcd.
package cliflag

import (
	"fmt"
	"os"

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

// Main runs app on the process's arguments and exits: a bad flag is one line (see
// OneLineUsageErrors), an error is one line "NAME: error" on stderr, and the exit
// status is the error's own (cli.Exit) or badInput.
func Main(app *cli.App, badInput int) {
	OneLineUsageErrors(app.Name, app.Commands, badInput)
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		code := badInput
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}
