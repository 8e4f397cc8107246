package upstream

import (
	"math"
	"time"
)

// ewmaTau is the EWMA's time constant: an observation's weight falls to 1/e in 10 s.
const ewmaTau = float64(10 * time.Second)

// ewmaUpdate folds an observation (ns) made at now into the estimate v last updated at at.
// With no estimate (v <= 0) the observation becomes the estimate. Observations with the
// same timestamp as the previous one weigh nothing: the weight is time, not count.
func ewmaUpdate(v float64, at, now int64, obs float64) float64 {
	if v <= 0 {
		return obs
	}
	w := math.Exp(-float64(max(now-at, 0)) / ewmaTau)
	return v*w + obs*(1-w)
}

// ewmaDecay is the estimate as Pick sees it at now: decayed towards zero since its last
// observation. Without the decay an origin that P2C stopped choosing because it was once
// slow would keep its old score for ever and never get a request to show it recovered;
// with it, a slow origin that sees no traffic gets one probe request after a few time
// constants (about 23 s for 100 ms against a 10 ms neighbour).
func ewmaDecay(v float64, at, now int64) float64 {
	if v <= 0 || now <= at {
		return v
	}
	return v * math.Exp(-float64(now-at)/ewmaTau)
}

// window counts requests and failures in six 10-second buckets, for an error rate over the
// last minute that forgets old trouble without keeping a timestamp per request.
type window struct {
	slot [windowSlots]struct {
		epoch     int64 // bucket number (unix ns / windowSlot) the counts belong to
		req, fail uint64
	}
}

const (
	windowSlots = 6
	windowSlot  = int64(10 * time.Second)
)

func (w *window) add(now int64, failed bool) {
	e := max(now, 0) / windowSlot
	s := &w.slot[e%windowSlots]
	if s.epoch != e {
		s.epoch, s.req, s.fail = e, 0, 0
	}
	s.req++
	if failed {
		s.fail++
	}
}

// counts returns the requests and failures of the current bucket and the five before it
// (50 to 60 s of history).
func (w *window) counts(now int64) (req, fail uint64) {
	e := max(now, 0) / windowSlot
	for i := range w.slot {
		s := &w.slot[i]
		if s.epoch > e-windowSlots && s.epoch <= e {
			req += s.req
			fail += s.fail
		}
	}
	return req, fail
}

func (w *window) rate(now int64) float64 {
	req, fail := w.counts(now)
	if req == 0 {
		return 0
	}
	return float64(fail) / float64(req)
}
