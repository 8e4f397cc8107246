package mesh

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestNoGoroutineLeak runs first (file order) so its baseline is clean.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	nodes := startCluster(t, 3, nil)
	nodes[0].Announce(Announcement{Serial: 1, Hash: hashOf("leak")})
	eventually(t, 5*time.Second, "announcement spread", func() error {
		for _, nd := range nodes[1:] {
			if nd.Stats().Heard == 0 {
				return fmt.Errorf("%s heard nothing", nd.LocalName())
			}
		}
		return nil
	})
	for _, nd := range nodes {
		if err := nd.Shutdown(); err != nil {
			t.Fatalf("Shutdown(%s): %v", nd.LocalName(), err)
		}
	}
	const slack = 2
	eventually(t, 10*time.Second, "goroutines back to baseline", func() error {
		if n := runtime.NumGoroutine(); n > base+slack {
			return fmt.Errorf("%d goroutines, baseline %d (+%d slack)", n, base, slack)
		}
		return nil
	})
}
