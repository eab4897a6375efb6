package main

import "github.com/urfave/cli/v2"

func benchCommand() *cli.Command {
	return &cli.Command{Name: "bench", Usage: "measure Baton on a sandbox", Subcommands: []*cli.Command{benchDetectCommand(), benchFailoverCommand(), benchAllCommand()}}
}
