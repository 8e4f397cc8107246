package upstream

import (
	"net/http"
	"net/url"
	"time"
)

// Defaults for the zero values of the configuration types. The snapshot compiler usually
// fills these in itself; the package applies them again so that a hand-built config works.
const (
	DefaultCheckInterval  = 2 * time.Second // between two checks of one origin
	DefaultCheckTimeout   = time.Second     // one check, connect to end of body
	DefaultCheckRise      = 2               // successes in a row that mark an origin up
	DefaultCheckFall      = 3               // failures in a row that mark an origin down
	DefaultCheckStatusMin = 200             // lowest status a healthy origin answers with
	DefaultCheckStatusMax = 399             // highest; redirects count as alive

	DefaultConsecutiveFailures = 5               // live failures in a row that eject an origin
	DefaultBaseEjection        = 5 * time.Second // first ejection; doubles while it repeats
	DefaultMaxEjection         = 5 * time.Minute // cap on one ejection

	DefaultRetryRatio        = 0.2 // retries may add 20% to a site's first attempts
	DefaultRetryMinPerSecond = 10  // floor, so a quiet site can still retry

	// checkBodyLimit is how much of a health-check body is read: enough for any status page,
	// bounded so that a misconfigured path serving a large file costs little.
	checkBodyLimit = 64 << 10
)

// HealthCheck configures active checks of a pool's origins. Immutable once handed to
// Registry.Group; comparing two values with == tells whether a checker must restart.
type HealthCheck struct {
	// Method of the check request; default "GET". HEAD is cheaper but cannot use BodyContains.
	Method string
	// Path is required, e.g. "/healthz". It is appended to the origin URL's path prefix and
	// may carry a query ("/healthz?deep=1").
	Path string
	// Host is the Host header; "" means the origin URL's host. TLS still verifies the
	// certificate against the URL's host.
	Host string
	// StatusMin and StatusMax bound the expected status, inclusive; default 200..399.
	// Redirects are not followed: a 302 is an answer.
	StatusMin, StatusMax int
	// BodyContains, if not empty, must occur in the first 64 KiB of the body.
	BodyContains string
	// Interval from the end of one check to the start of the next, ±10% jitter so that
	// many nodes do not check in lock step; default 2s.
	Interval time.Duration
	// Timeout of one check, from dialling to the end of the body read; default 1s.
	Timeout time.Duration
	// Rise is the successes in a row that mark a down origin up (default 2); Fall the
	// failures in a row that mark an up origin down (default 3). Higher is steadier but
	// slower to react: with the defaults an origin is down about 3 intervals after it dies.
	Rise, Fall int
}

func (c HealthCheck) withDefaults() HealthCheck {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if c.StatusMin <= 0 {
		c.StatusMin = DefaultCheckStatusMin
	}
	if c.StatusMax <= 0 {
		c.StatusMax = DefaultCheckStatusMax
	}
	if c.Interval <= 0 {
		c.Interval = DefaultCheckInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultCheckTimeout
	}
	if c.Rise <= 0 {
		c.Rise = DefaultCheckRise
	}
	if c.Fall <= 0 {
		c.Fall = DefaultCheckFall
	}
	return c
}

// Outlier configures passive outlier detection: ejecting an origin on the failures of live
// traffic, which reacts within a few requests where active checks need seconds. Immutable.
type Outlier struct {
	// ConsecutiveFailures is the failures (5xx, connect errors, timeouts) in a row that
	// eject an origin; default 5; below 0 disables ejection. After an ejection ends, the
	// origin is on probation: one failure before its first success ejects it again.
	ConsecutiveFailures int
	// BaseEjection is the first ejection; each ejection in a row doubles it; default 5s.
	BaseEjection time.Duration
	// MaxEjection caps one ejection; default 5m. An origin that stays broken is retried
	// at least this often by live traffic.
	MaxEjection time.Duration
}

func (o Outlier) withDefaults() Outlier {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if o.BaseEjection <= 0 {
		o.BaseEjection = DefaultBaseEjection
	}
	if o.MaxEjection <= 0 {
		o.MaxEjection = DefaultMaxEjection
	}
	o.MaxEjection = max(o.MaxEjection, o.BaseEjection)
	return o
}

// RetryPolicy sizes a Group's RetryBudget. The zero value means the defaults.
type RetryPolicy struct {
	// Ratio is the retries allowed per first attempt, 0.2 = 20%; 0 means
	// DefaultRetryRatio, below 0 means none funded by traffic (only the floor).
	Ratio float64
	// MinPerSecond is the floor of retries per second however quiet the site; 0 means
	// DefaultRetryMinPerSecond, below 0 means no floor.
	MinPerSecond float64
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Ratio == 0 {
		p.Ratio = DefaultRetryRatio
	}
	if p.MinPerSecond == 0 {
		p.MinPerSecond = DefaultRetryMinPerSecond
	}
	return p
}

// OriginConfig is one origin of a pool.
type OriginConfig struct {
	// URL is the origin's scheme and host, with an optional path prefix. Required;
	// it must not be modified after it is handed to Registry.Group.
	URL *url.URL
	// Weight is the origin's capacity relative to the pool's others, 1..100 (values out of
	// range are clamped). It scales both how often it is drawn and how much load it may
	// carry before Pick prefers another.
	Weight int
}

// PoolConfig is one origin pool of a site.
type PoolConfig struct {
	// Name identifies the pool in status and logs, and with an origin's URL keys the
	// origin's live state across config swaps.
	Name string
	// Origins in configured order.
	Origins []OriginConfig
	// Check configures active health checks; nil means none (origins count as up and only
	// outlier detection removes them).
	Check *HealthCheck
}
