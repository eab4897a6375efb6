// Command baton-lab is Baton's lab: real local clusters (sandboxes) to try Baton on,
// the demo and the benchmarks. It is not part of the product: it links an embedded
// etcd server and runs as root. The sandboxes' agents run the product binary, baton,
// found next to baton-lab or given with --baton. This package holds flags and wiring
// only; the work is done in internal/sandbox, internal/lab/demo and internal/lab/bench.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/internal/cliflag"
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
	cliflag.Main(app, exitBadInput)
}
