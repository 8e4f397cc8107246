package control

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"rhizome/internal/rollout"
)

// reportDomain separates report signatures from every other use of a node key.
const reportDomain = "rhizome-report-v1\n"

// Report is a node's signed statement about the bundle it runs: healthy or not, with its
// figures since it activated it. A node publishes its latest report in its mesh metadata;
// later waves of a rollout start only on healthy reports from the earlier ones. Field names
// are short because metadata is limited to 512 bytes.
type Report struct {
	// Node is the reporting node. It is not in the body (metadata is scarce) but it is
	// signed: the signature covers the domain, the node name and the body.
	Node    string `json:"-"`
	Bundle  string `json:"b"` // bundle hash
	Serial  uint64 `json:"s"`
	Healthy bool   `json:"ok"`
	// Draining: the operator is taking the node out of service; DNS stops naming it while
	// it keeps serving the clients that still come.
	Draining bool `json:"dr,omitempty"`
	// Load is the node's CPU load bucket: 0 below 0.7 of its cores busy, 1 below 1.0, 2
	// below 1.5, 3 beyond. Coarse, so that a report changes (and is gossiped) rarely.
	Load    uint8     `json:"l,omitempty"`
	Figures [4]uint64 `json:"c"` // requests, node errors, panics, stage failures
	At      int64     `json:"t"` // unix ms, signer's clock (for people reading status)
}

// Counters returns the figures as rollout counters.
func (r Report) Counters() rollout.Counters {
	return rollout.Counters{Requests: r.Figures[0], NodeErrors: r.Figures[1], Panics: r.Figures[2], StageFailures: r.Figures[3]}
}

// SetCounters stores c in the report.
func (r *Report) SetCounters(c rollout.Counters) {
	r.Figures = [4]uint64{c.Requests, c.NodeErrors, c.Panics, c.StageFailures}
}

// reportMessage is what a report's signature covers: a report signed by one node cannot
// be passed off as another's.
func reportMessage(node string, body []byte) []byte {
	m := make([]byte, 0, len(reportDomain)+len(node)+1+len(body))
	m = append(append(append(m, reportDomain...), node...), '\n')
	return append(m, body...)
}

// SignedReport is a report and its signature, as it sits in metadata. Body is the exact
// JSON that was signed, embedded as it is.
type SignedReport struct {
	Body json.RawMessage `json:"b"`
	Sig  []byte          `json:"s"`
}

// SignReport signs r with the node's key.
func SignReport(r Report, key ed25519.PrivateKey) (json.RawMessage, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("report: not an Ed25519 private key")
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return json.Marshal(SignedReport{Body: body, Sig: ed25519.Sign(key, reportMessage(r.Node, body))})
}

// VerifyReport checks a report published by node name under key pub.
func VerifyReport(raw json.RawMessage, name string, pub ed25519.PublicKey) (*Report, error) {
	if len(raw) == 0 {
		return nil, errors.New("report: none")
	}
	var s SignedReport
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, reportMessage(name, s.Body), s.Sig) {
		return nil, errors.New("report: bad signature")
	}
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	r.Node = name
	if !hashRE.MatchString(r.Bundle) {
		return nil, errors.New("report: bundle: want a bundle hash")
	}
	return &r, nil
}
