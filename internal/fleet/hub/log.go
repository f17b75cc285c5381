package hub

import (
	"fmt"
	"log/slog"
	"sync"
)

// natsLogger passes the embedded server's log to slog and keeps its last
// error, so a server that gives up starting says why. The server calls
// Fatalf on a fatal configuration error; unlike its own logger, this one
// does not exit the process.
type natsLogger struct {
	log   *slog.Logger
	mu    sync.Mutex
	err   string
	fatal bool
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(string, ...any)           {}
func (l *natsLogger) Tracef(string, ...any)           {}
func (l *natsLogger) Errorf(format string, v ...any)  { l.fail(false, format, v...) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.fail(true, format, v...) }

func (l *natsLogger) fail(fatal bool, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	l.mu.Lock()
	l.err = msg
	l.fatal = l.fatal || fatal
	l.mu.Unlock()
}

// lastError returns the last error logged and whether any was fatal.
func (l *natsLogger) lastError() (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err, l.fatal
}
