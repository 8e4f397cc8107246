// Command rhizome is the single binary of the rhizome edge network. This package only parses
// the command line and calls into internal packages; it holds no logic of its own.
package main

import (
	"fmt"
	"io"
	"os"

	"rhizome/internal/node"
)

const usage = `rhizome: a decentralized edge network in one binary.

Usage:
  rhizome demo [--nodes 5]                                a mesh on this machine: origins, signed bundle, traffic, dashboard
  rhizome demo --scenario nov18 [--headless]              replay the outage of 18 November 2025 and score it
  rhizome proxy --origin URL [--origin URL]... [flags]   a caching reverse proxy, no files needed
  rhizome proxy --demo                                    the same, in front of a built-in sample origin
  rhizome node --config node.yaml                         a mesh node serving signed bundles
  rhizome keygen --out PREFIX                             an Ed25519 operator (or node) key pair
  rhizome keygen --dnssec ZONE --out PREFIX               a DNSSEC signing key for a zone, and its DS record
  rhizome validate FILE.yaml                              check a bundle source
  rhizome bundle sign FILE.yaml --key K [--key K2]        validate and sign a bundle (M of N: several keys,
  rhizome bundle cosign BUNDLE --key K                      or co-signers adding theirs)
  rhizome push [--admin ADDR] BUNDLE                      hand a signed bundle to a node
  rhizome rollout status [flags]                          where the newest bundle's rollout stands
  rhizome rollout halt|resume|rollback --key K [flags]    stop, restart or undo a rollout, mesh-wide
  rhizome killswitch STAGE [--site S] on|off --key K      bypass a stage on every node now (no waves)
  rhizome drain on|off [flags]                            take a node out of DNS answers (or back)
  rhizome purge URL... | --prefix P | --tag T [flags]     purge a node's cache through its admin API
  rhizome status [flags]                                  a node's sites and cache figures
  rhizome version

Run 'rhizome COMMAND -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	node.Version = version
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "demo":
		err = runDemo(args[1:], stdout, stderr)
	case "proxy":
		err = runProxy(args[1:], stderr)
	case "node":
		err = runNode(args[1:], stderr)
	case "keygen":
		err = runKeygen(args[1:], stdout)
	case "validate":
		err = runValidate(args[1:], stdout)
	case "bundle":
		err = runBundle(args[1:], stdout)
	case "push":
		err = runPush(args[1:], stdout)
	case "purge":
		err = runPurge(args[1:], stdout)
	case "rollout":
		err = runRollout(args[1:], stdout)
	case "killswitch":
		err = runKillSwitch(args[1:], stdout)
	case "drain":
		err = runDrain(args[1:], stdout)
	case "status":
		err = runStatus(args[1:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "rhizome", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "rhizome: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if err != errUsage {
			fmt.Fprintln(stderr, "rhizome:", err)
		}
		return 1
	}
	return 0
}
