// Command baton is the Baton failover manager: the per-node agent and the operator's CLI
// in one binary. This package holds flags and wiring only; the work is done in the
// packages it calls. The lab (sandboxes, the demo, the benchmarks) is another binary,
// cmd/baton-lab: nothing here links an etcd server.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/internal/cliflag"
)

// Exit codes shared by every command: 0 done, 1 refused as unsafe, 2 bad input or an
// unreachable dependency.
const (
	exitRefused  = 1
	exitBadInput = 2
)

func main() {
	app := &cli.App{
		Name:                 "baton",
		Usage:                "keep one writable MySQL/MariaDB primary, and move it when it stops taking writes",
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			agentCommand(),
			statusCommand(),
			switchoverCommand(),
			failoverCommand(),
			rejoinCommand(),
			rebuildCommand(),
			pauseCommand(),
			resumeCommand(),
			unblockCommand(),
			historyCommand(),
			policyCommand(),
			probeCommand(),
			webCommand(),
		},
	}
	cliflag.Main(app, exitBadInput)
}
