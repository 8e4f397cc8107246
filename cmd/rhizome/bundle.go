package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"rhizome/internal/bundle"
	"rhizome/internal/dns"
	"rhizome/internal/node"
)

func runNode(args []string, stderr io.Writer) error {
	fs := newFlagSet("node", stderr)
	config := fs.String("config", "", "the node's bootstrap file (node.yaml)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "json", "json or text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *config == "" {
		return fmt.Errorf("--config: the node's bootstrap file is required")
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	boot, err := node.LoadBootstrap(*config)
	if err != nil {
		return fmt.Errorf("--config %s: %w", *config, err)
	}
	n, err := node.Start(boot, log)
	if err != nil {
		return err
	}
	log.Info("rhizome node serving", "name", boot.Name, "listen", n.Edge.Addr.String(), "admin", n.Edge.AdminAddr.String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-n.Edge.Err():
		log.Error("listener failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.Shutdown(sctx)
}

func runKeygen(args []string, stdout io.Writer) error {
	fs := newFlagSet("keygen", os.Stderr)
	out := fs.String("out", "", "path prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub")
	zone := fs.String("dnssec", "", "make a DNSSEC signing key for this zone instead (PREFIX.private, PREFIX.ds)")
	alg := fs.String("algorithm", "ECDSAP256SHA256", "DNSSEC algorithm: ECDSAP256SHA256 or ED25519")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out: a path prefix is required, e.g. --out keys/alice")
	}
	if *zone != "" {
		priv, dnskey, ds, err := dns.GenerateDNSSECKey(*zone, *alg)
		if err != nil {
			return fmt.Errorf("--dnssec: %w", err)
		}
		if err := writeNew(*out+".private", priv, 0o600); err != nil {
			return err
		}
		if err := writeNew(*out+".ds", ds+"\n", 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "DNSSEC key for %s in %s.private: put its content in the zone's dnssec.key\nDNSKEY %s\nDS (give it to your registrar) %s\n", *zone, *out, dnskey, ds)
		return nil
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return err
	}
	if err := writeNew(*out+".key", bundle.FormatPrivateKey(priv)+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(*out+".pub", bundle.FormatPublicKey(pub)+"\n", 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key id %s\npublic key %s (put it in the nodes' trust.keys)\nprivate key %s.key (keep it secret)\n", bundle.KeyID(pub), bundle.FormatPublicKey(pub), *out)
	return nil
}

// writeNew refuses to overwrite: replacing a key by accident loses the power to sign.
func writeNew(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runValidate(args []string, stdout io.Writer) error {
	fs := newFlagSet("validate", os.Stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: rhizome validate FILE.yaml")
	}
	cfg, err := readSource(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok: serial %d, %d sites\n", fs.Arg(0), cfg.Serial, len(cfg.Sites))
	printPlan(stdout, cfg)
	return nil
}

// printPlan says how the bundle will spread, and warns when it has no waves.
func printPlan(w io.Writer, cfg *bundle.Config) {
	if cfg.Rollout == nil || len(cfg.Rollout.Waves) <= 1 {
		fmt.Fprintln(w, "note: no rollout waves: this bundle goes to every node at once (add a rollout: section to stage it; see docs/rollout.md)")
		return
	}
	var steps []string
	for _, wv := range cfg.Plan().Waves {
		step := fmt.Sprintf("%g%%", wv.Percent)
		if wv.Nodes > 0 {
			step = fmt.Sprintf("%d node(s)", wv.Nodes)
		}
		if wv.Bake > 0 {
			step += " bake " + wv.Bake.String()
		}
		steps = append(steps, step)
	}
	fmt.Fprintf(w, "rollout: %s\n", strings.Join(steps, ", then "))
}

func readSource(path string) (*bundle.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := bundle.ParseSource(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func readKeys(paths []string) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--key[%d]: %w", i, err)
		}
		k, err := bundle.ParsePrivateKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("--key[%d] %s: %w", i, p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func runBundle(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: rhizome bundle sign FILE.yaml --key K [--key K2] [--out F] [--parent PREVIOUS.bundle] | rhizome bundle cosign BUNDLE --key K")
	}
	switch args[0] {
	case "sign":
		fs := newFlagSet("bundle sign", os.Stderr)
		var keyPaths listFlag
		fs.Var(&keyPaths, "key", "operator private key file (rhizome keygen); repeat to sign with several")
		out := fs.String("out", "", "where to write the signed bundle (default: FILE with .bundle)")
		parent := fs.String("parent", "", "the bundle this one follows, to record its hash")
		if err := parseFlags(fs, interleave(args[1:])); err != nil {
			return err
		}
		if fs.NArg() != 1 || len(keyPaths) == 0 {
			return fmt.Errorf("usage: rhizome bundle sign FILE.yaml --key K [--key K2] [--out F]")
		}
		cfg, err := readSource(fs.Arg(0))
		if err != nil {
			return err
		}
		keys, err := readKeys(keyPaths)
		if err != nil {
			return err
		}
		body := &bundle.Body{Serial: cfg.Serial, Created: time.Now().UTC().Truncate(time.Second), Config: cfg}
		if *parent != "" {
			pb, err := os.ReadFile(*parent)
			if err != nil {
				return fmt.Errorf("--parent: %w", err)
			}
			ps, err := bundle.Decode(pb)
			if err != nil {
				return fmt.Errorf("--parent: %w", err)
			}
			body.Parent = ps.Hash()
		}
		s, err := bundle.Sign(body, keys...)
		if err != nil {
			return err
		}
		path := *out
		if path == "" {
			path = strings.TrimSuffix(strings.TrimSuffix(fs.Arg(0), ".yaml"), ".yml") + ".bundle"
		}
		if err := writeBundle(stdout, path, s); err != nil {
			return err
		}
		printPlan(stdout, cfg)
		return nil
	case "cosign":
		fs := newFlagSet("bundle cosign", os.Stderr)
		var keyPaths listFlag
		fs.Var(&keyPaths, "key", "operator private key file to add a signature with; repeatable")
		if err := parseFlags(fs, interleave(args[1:])); err != nil {
			return err
		}
		if fs.NArg() != 1 || len(keyPaths) == 0 {
			return fmt.Errorf("usage: rhizome bundle cosign BUNDLE --key K")
		}
		b, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		s, err := bundle.Decode(b)
		if err != nil {
			return err
		}
		keys, err := readKeys(keyPaths)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := s.AddSignature(k); err != nil {
				return err
			}
		}
		return writeBundle(stdout, fs.Arg(0), s)
	default:
		return fmt.Errorf("rhizome bundle: unknown subcommand %q (sign, cosign)", args[0])
	}
}

func writeBundle(stdout io.Writer, path string, s *bundle.Signed) error {
	b, err := s.Encode()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	var signers []string
	for _, sig := range s.Signatures {
		signers = append(signers, sig.KeyID)
	}
	fmt.Fprintf(stdout, "%s: bundle %s, signed by %s\n", path, s.Hash()[:16], strings.Join(signers, ", "))
	return nil
}

func runPush(args []string, stdout io.Writer) error {
	fs := newFlagSet("push", os.Stderr)
	c := addAdminFlags(fs)
	if err := parseFlags(fs, interleave(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: rhizome push [--admin ADDR] BUNDLE")
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var res node.BundleInfo
	if err := c.do(http.MethodPost, "/v1/bundle", rawBody(b), &res); err != nil {
		return err
	}
	if res.State == "pending" {
		fmt.Fprintf(stdout, "accepted: serial %d, bundle %s, %d sites; this node is in wave %d: %s\n", res.Serial, res.Hash[:16], res.Sites, res.Wave, res.Waiting)
		fmt.Fprintln(stdout, "the mesh rolls it out wave by wave: follow it with 'rhizome rollout status'")
		return nil
	}
	fmt.Fprintf(stdout, "active: serial %d, bundle %s, %d sites\n", res.Serial, res.Hash[:16], res.Sites)
	return nil
}
