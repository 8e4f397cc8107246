package upstream

import "time"

// outlierState is the passive-ejection bookkeeping of one origin. Pure: the caller passes
// the time and the config, and stores the result where Pick can see it.
type outlierState struct {
	consecutive int   // failures in a row, whatever their attempt began; reset by a success
	streak      int   // ejections in a row; reset by a success after re-admission
	until       int64 // unix ns at which the latest ejection ends; 0 = never ejected
}

// outlierEvent is what one outcome did.
type outlierEvent struct {
	ejected    bool
	until      int64 // when ejected: end of the new ejection, unix ns
	streak     int   // when ejected: ejections in a row, this one included
	readmitted bool  // the first success after an ejection ended: the streak is over
}

// record applies one outcome of an attempt that began at began, ending at now.
//
// A failure ejects the origin when it makes ConsecutiveFailures in a row, or at once while
// the origin is on probation (ejected before, no success since re-admission): an origin
// that fails the first request after its ejection is most likely still broken, and waiting
// for N more failures would cost N more failed user requests. Failures of attempts that
// began before the latest ejection ended (stragglers in flight, panic-mode tries) count in
// the streak of failures but cannot eject: the ejection in force already judged that time.
func (s *outlierState) record(failed bool, began, now int64, cfg Outlier) outlierEvent {
	if !failed {
		s.consecutive = 0
		if s.streak > 0 && now >= s.until {
			s.streak = 0
			return outlierEvent{readmitted: true}
		}
		return outlierEvent{}
	}
	s.consecutive++
	if cfg.ConsecutiveFailures < 0 || now < s.until || began < s.until {
		return outlierEvent{}
	}
	if s.streak == 0 && s.consecutive < cfg.ConsecutiveFailures {
		return outlierEvent{}
	}
	s.until = now + int64(ejectionDuration(cfg.BaseEjection, cfg.MaxEjection, s.streak))
	s.streak++
	return outlierEvent{ejected: true, until: s.until, streak: s.streak}
}

// ejectionDuration is base * 2^previous, capped at limit (and safe from overflow).
func ejectionDuration(base, limit time.Duration, previous int) time.Duration {
	d := base
	for range previous {
		if d >= limit {
			break
		}
		d *= 2
	}
	return min(d, limit)
}

// riseFall turns a sequence of check results into an up/down state with hysteresis.
type riseFall struct {
	ok, bad int // successes / failures in a row
}

// observe records one check result and returns the new state given the current one.
func (rf *riseFall) observe(success, up bool, rise, fall int) bool {
	if success {
		rf.ok, rf.bad = rf.ok+1, 0
		if !up && rf.ok >= rise {
			return true
		}
		return up
	}
	rf.ok, rf.bad = 0, rf.bad+1
	if up && rf.bad >= fall {
		return false
	}
	return up
}
