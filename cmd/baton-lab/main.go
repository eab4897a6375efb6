// Command baton-lab is Baton's lab: real local clusters (sandboxes) to try Baton on,
// the demo and the benchmarks. It is not part of the product: it links an embedded
// etcd server and runs as root. The sandboxes' agents run the product binary, baton,
// found next to baton-lab or given with --baton. This package holds flags and wiring
// only; the work is done in internal/sandbox, internal/lab/demo and internal/lab/bench.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes: 0 done, 1 the demo or a benchmark found Baton wanting (or a sandbox
// command failed), 2 bad input or a machine that cannot run a sandbox.
const (
	exitRefused  = 1
	exitBadInput = 2
)

func main() {
	app := &cli.App{
		Name:                 "baton-lab",
		Usage:                "try and measure Baton on real local clusters: sandboxes, the demo, the benchmarks",
		EnableBashCompletion: true,
		Commands:             []*cli.Command{sandboxCommand(), demoCommand(), benchCommand()},
	}
	oneLineUsageErrors(app.Name, app.Commands)
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "baton-lab: %v\n", err)
		code := exitBadInput
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}

// oneLineUsageErrors makes a bad flag or flag value, of cmds and their subcommands,
// one line on stderr and exit status 2, instead of urfave/cli's usage text on stdout.
func oneLineUsageErrors(prefix string, cmds []*cli.Command) {
	for _, c := range cmds {
		name := prefix + " " + c.Name
		if c.OnUsageError == nil {
			c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
				return cli.Exit(fmt.Sprintf("%s: %v (see `%s --help`)", name, err, name), exitBadInput)
			}
		}
		oneLineUsageErrors(name, c.Subcommands)
	}
}
