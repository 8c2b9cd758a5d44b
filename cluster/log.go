package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// logWriter turns memberlist's log lines ("2026/01/02 15:04:05 [WARN]
// memberlist: ...") into slog records at the matching level. memberlist
// writes each line with one Write call; Write is called from memberlist's
// goroutines concurrently and is thread-safe because slog is.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\r\n"))
	level := slog.LevelInfo
	if i := strings.IndexByte(line, '['); i >= 0 {
		if j := strings.IndexByte(line[i:], ']'); j > 0 {
			switch line[i+1 : i+j] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[i+j+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Log(context.Background(), level, line, "component", "memberlist")
	return len(p), nil
}
