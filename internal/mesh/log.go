package mesh

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter adapts memberlist's *log.Logger output to slog. Each Write is one
// log line (log.Logger guarantees that and serialises calls). memberlist tags
// lines "[DEBUG]", "[INFO]", "[WARN]", "[ERR]"; WARN and ERR go to slog Warn,
// everything else to Debug, because memberlist's INFO lines are routine.
type slogWriter struct {
	log *slog.Logger
}

// newMemberlistLogger returns a *log.Logger for memberlist.Config.Logger that
// writes to l.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{log: l.With("component", "memberlist")}, "", 0)
}

// Write implements io.Writer. It never fails.
func (w slogWriter) Write(p []byte) (int, error) {
	n := len(p)
	line := string(bytes.TrimRight(p, "\r\n"))
	level := slog.LevelDebug
	for _, tag := range [...]struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG] ", slog.LevelDebug},
		{"[INFO] ", slog.LevelDebug},
		{"[WARN] ", slog.LevelWarn},
		{"[ERR] ", slog.LevelWarn},
		{"[ERROR] ", slog.LevelWarn},
	} {
		if rest, ok := strings.CutPrefix(line, tag.prefix); ok {
			line, level = rest, tag.level
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Log(context.Background(), level, line)
	return n, nil
}
