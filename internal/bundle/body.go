package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Body is what operators sign: one version of the configuration and where it comes from.
type Body struct {
	// Serial is the bundle's version; it must equal Config.Serial (it is repeated here so
	// that a node can read it without decoding the config).
	Serial uint64 `json:"serial"`
	// Parent is the hex SHA-256 of the previous bundle's body bytes (its Signed.Hash), or ""
	// for the first bundle: a history that operators and nodes can audit.
	Parent string `json:"parent,omitempty"`
	// Created is when the bundle was made; Canonical writes it in UTC.
	Created time.Time `json:"created"`
	Config  *Config   `json:"config"`
}

// NewBody returns the body of config c, with Serial taken from it and Created from now.
// A nil c gives a body that Sign refuses with a reason.
func NewBody(c *Config, parent string, now time.Time) *Body {
	b := &Body{Parent: parent, Created: now.UTC(), Config: c}
	if c != nil {
		b.Serial = c.Serial
	}
	return b
}

// Canonical returns the bytes that are signed: encoding/json of b with field order fixed by
// the structs (Config has no maps), HTML escaping off, Created in UTC and no trailing
// newline. The same body always gives the same bytes, and decoding them and calling
// Canonical again gives them back, which is what lets a node insist that the bytes it
// verified are canonical (see Verify). It does not modify b.
func (b *Body) Canonical() ([]byte, error) {
	if b == nil {
		return nil, errors.New("body: nil")
	}
	c := *b
	// The same instant in another zone must not give other bytes.
	c.Created = c.Created.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// "<" in a URL or a body_contains string stays "<": the bytes are signed, not embedded
	// in HTML, and escaping would only make them harder to read and compare.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeBody reads signed body bytes strictly and checks them: one JSON value with no
// unknown fields, in canonical form, with a consistent serial, a well-formed parent and a
// config that validates. It is shared by Sign, AddSignature and Verify, so that nothing can
// be signed that a node would refuse for its body. Errors wrap ErrInvalid.
func decodeBody(raw []byte) (*Body, error) {
	if len(raw) > MaxBodyBytes {
		return nil, fmt.Errorf("body: %w: %d bytes exceed the limit of %d", ErrTooLarge, len(raw), MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var b Body
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("body: %w", invalid(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("body: %w", invalid(errors.New("data after the JSON value")))
	}
	// encoding/json accepts more than one spelling of the same body (keys in any case or
	// order, duplicate keys, spaces, escapes). Insisting on the canonical spelling leaves one
	// byte string per body, so the hash is a true id and no two nodes can read one signed
	// body two ways.
	canon, err := b.Canonical()
	if err != nil {
		return nil, invalid(err)
	}
	if !bytes.Equal(canon, raw) {
		return nil, fmt.Errorf("body: %w", invalid(errors.New("not in canonical form")))
	}
	if err := checkBody(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

// checkBody checks the fields of b (not its encoding). Errors wrap ErrInvalid.
func checkBody(b *Body) error {
	if b.Config == nil {
		return fmt.Errorf("body: %w", invalid(errors.New("config: required")))
	}
	if b.Serial != b.Config.Serial {
		return fmt.Errorf("body: %w", invalid(fmt.Errorf("serial: %d differs from config serial %d", b.Serial, b.Config.Serial)))
	}
	if b.Parent != "" {
		if raw, err := hex.DecodeString(b.Parent); err != nil || len(raw) != 32 || hex.EncodeToString(raw) != b.Parent {
			return fmt.Errorf("body: %w", invalid(errors.New("parent: want 64 lower-case hex digits (a bundle hash) or nothing")))
		}
	}
	if err := Validate(b.Config); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}
