package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"rhizome/internal/admin"
	"rhizome/internal/control"
	"rhizome/internal/node"
)

func runRollout(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: rhizome rollout status|halt|resume|rollback [flags]")
	}
	switch args[0] {
	case "status":
		return runRolloutStatus(args[1:], stdout)
	case control.KindHalt, control.KindResume, control.KindRollback:
		return runRolloutControl(args[0], args[1:], stdout)
	default:
		return fmt.Errorf("rollout: unknown subcommand %q: want status, halt, resume or rollback", args[0])
	}
}

func runRolloutStatus(args []string, stdout io.Writer) error {
	fs := newFlagSet("rollout status", os.Stderr)
	c := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print the admin API's JSON as it is")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(http.MethodGet, "/v1/rollout", nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(append(raw, '\n'))
		return err
	}
	var st node.RolloutStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	printRollout(stdout, &st)
	return nil
}

// printRollout writes a rollout for people: the bundle, its state, then each wave.
func printRollout(w io.Writer, st *node.RolloutStatus) {
	if st.Bundle == "" {
		fmt.Fprintf(w, "node %s holds no bundle\n", st.Node)
	} else {
		fmt.Fprintf(w, "bundle serial %d (%s): %s on %s, wave %d", st.Serial, st.Bundle[:16], st.State, st.Node, st.Wave)
		if st.Waiting != "" {
			fmt.Fprintf(w, ", waiting: %s", st.Waiting)
		}
		fmt.Fprintln(w)
		if st.Stopped != nil {
			fmt.Fprintf(w, "stopped: %s\n", st.Stopped.Reason)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WAVE\tTARGET\tBAKE\tNODE\tRUNS IT\tHEALTHY\tFOR")
		for i, wv := range st.Waves {
			if len(wv.Members) == 0 {
				fmt.Fprintf(tw, "%d\t%s\t%s\t(none)\t\t\t\n", i, wv.Target, wv.Bake)
			}
			for _, m := range wv.Members {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i, wv.Target, wv.Bake, m.Name, yesNo(m.Running), yesNo(m.Healthy && m.Running), m.For)
			}
		}
		tw.Flush()
	}
	wt := st.Watch
	switch {
	case wt.Bundle == "":
	case !wt.Healthy:
		fmt.Fprintf(w, "this node: UNHEALTHY on %s: %s\n", wt.Bundle[:16], wt.Reason)
	case wt.Done:
		fmt.Fprintf(w, "this node: healthy on %s (watch over)\n", wt.Bundle[:16])
	default:
		fmt.Fprintf(w, "this node: healthy so far on %s, %s of watch left\n", wt.Bundle[:16], wt.Left)
	}
	if wt.LastUnhealthy != "" {
		fmt.Fprintf(w, "this node was %s\n", wt.LastUnhealthy)
	}
	if c := wt.Counters; wt.Bundle != "" {
		fmt.Fprintf(w, "  %d requests, %d node errors, %d panics, %d stage failures since activation\n", c.Requests, c.NodeErrors, c.Panics, c.StageFailures)
	}
	for _, s := range st.KillSwitches {
		site := s.Site
		if site == "" {
			site = "all sites"
		}
		fmt.Fprintf(w, "kill switch %s (%s): %s, set %s by %s\n", s.Stage, site, onOff(s.On), time.UnixMilli(s.At).UTC().Format(time.RFC3339), s.KeyID)
	}
	for _, r := range st.Records {
		who := "operator " + r.KeyID
		if r.Kind == control.KindUnhealthy {
			who = "node " + r.Node
		}
		what := r.Kind
		if r.Bundle != "" {
			what += " " + r.Bundle[:16]
		}
		if r.Kind == control.KindKillSwitch {
			what += fmt.Sprintf(" %s %s %s", r.Stage, r.Site, onOff(r.On))
		}
		fmt.Fprintf(w, "record %s %s by %s", time.UnixMilli(r.At).UTC().Format(time.RFC3339), strings.TrimSpace(what), who)
		if r.Reason != "" {
			fmt.Fprintf(w, ": %s", r.Reason)
		}
		fmt.Fprintln(w)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// runRolloutControl signs and sends a halt, resume or rollback.
func runRolloutControl(kind string, args []string, stdout io.Writer) error {
	fs := newFlagSet("rollout "+kind, os.Stderr)
	c := addAdminFlags(fs)
	keyPath := fs.String("key", "", "operator private key file (required)")
	hash := fs.String("bundle", "", "bundle hash (default: the newest bundle the node holds)")
	reason := fs.String("reason", "", "why, for the record (shown in every node's status)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyPath == "" {
		return fmt.Errorf("--key: an operator key is required: control records are signed")
	}
	keys, err := readKeys([]string{*keyPath})
	if err != nil {
		return err
	}
	rec := control.Record{Kind: kind, Bundle: *hash, Reason: *reason, At: time.Now().UnixMilli()}
	if rec.Bundle == "" {
		var st node.RolloutStatus
		if err := c.do(http.MethodGet, "/v1/rollout", nil, &st); err != nil {
			return err
		}
		if st.Bundle == "" {
			return fmt.Errorf("--bundle: the node holds no bundle; name one")
		}
		rec.Bundle, rec.Serial = st.Bundle, st.Serial
	}
	st, err := sendControl(c, rec, keys[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s of bundle %s signed and sent; the mesh gossips it to every node\n", kind, rec.Bundle[:16])
	printRollout(stdout, st)
	return nil
}

// sendControl signs rec and hands it to the node, which checks it, obeys it and gossips it.
func sendControl(c adminClient, rec control.Record, key ed25519.PrivateKey) (*node.RolloutStatus, error) {
	s, err := control.Sign(rec, key)
	if err != nil {
		return nil, err
	}
	var st node.RolloutStatus
	if err := c.do(http.MethodPost, "/v1/control", rawBody(s.Encode()), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// runKillSwitch signs and sends a kill switch.
func runKillSwitch(args []string, stdout io.Writer) error {
	fs := newFlagSet("killswitch", os.Stderr)
	c := addAdminFlags(fs)
	keyPath := fs.String("key", "", "operator private key file (required)")
	site := fs.String("site", "", "one site (default: every site)")
	reason := fs.String("reason", "", "why, for the record")
	if err := parseFlags(fs, interleave(args)); err != nil {
		return err
	}
	if fs.NArg() != 2 || (fs.Arg(1) != "on" && fs.Arg(1) != "off") {
		return fmt.Errorf("usage: rhizome killswitch STAGE [--site S] on|off --key K (STAGE: %s; on bypasses the stage)", strings.Join(control.Stages, ", "))
	}
	if *keyPath == "" {
		return fmt.Errorf("--key: an operator key is required: kill switches are signed")
	}
	keys, err := readKeys([]string{*keyPath})
	if err != nil {
		return err
	}
	rec := control.Record{Kind: control.KindKillSwitch, Stage: fs.Arg(0), Site: *site, On: fs.Arg(1) == "on", Reason: *reason, At: time.Now().UnixMilli()}
	if _, err := sendControl(c, rec, keys[0]); err != nil {
		return err
	}
	where := "every site"
	if *site != "" {
		where = "site " + *site
	}
	verb := "bypassed (kill switch on)"
	if !rec.On {
		verb = "running again (kill switch off)"
	}
	fmt.Fprintf(stdout, "stage %s is %s on %s; the mesh gossips it to every node now, without waves\n", rec.Stage, verb, where)
	return nil
}

// runDrain takes a node out of DNS answers, or puts it back.
func runDrain(args []string, stdout io.Writer) error {
	fs := newFlagSet("drain", os.Stderr)
	c := addAdminFlags(fs)
	if err := parseFlags(fs, interleave(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "on" && fs.Arg(0) != "off") {
		return fmt.Errorf("usage: rhizome drain on|off [--admin ADDR]")
	}
	on := fs.Arg(0) == "on"
	if err := c.do(http.MethodPost, "/v1/drain", admin.DrainRequest{On: on}, nil); err != nil {
		return err
	}
	if on {
		fmt.Fprintln(stdout, "draining: the mesh's DNS stops naming this node within seconds; it keeps serving the clients that still come (resolvers keep answers for their TTL)")
	} else {
		fmt.Fprintln(stdout, "not draining: this node is back in DNS answers while it is healthy")
	}
	return nil
}
