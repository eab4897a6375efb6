package sandboxtest

import (
	"bytes"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logKeep bounds what Logger holds for one test: past it the older half goes.
const logKeep = 4 << 20

// Logger returns a logger for what a test runs in its own process (embedded etcd,
// an agent's parts) that keeps entries from level up in memory and writes them to
// the test's log only when the test fails: a passing test prints nothing, a failing
// one shows what happened. Entries written after the test has ended are dropped.
func Logger(t testing.TB, level zapcore.Level) *zap.Logger {
	t.Helper()
	buf := &logBuffer{}
	t.Cleanup(func() {
		b := buf.close()
		if t.Failed() && len(b) > 0 {
			t.Logf("log of %s:\n%s", t.Name(), b)
		}
	})
	enc := zap.NewDevelopmentEncoderConfig()
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(buf), level))
}

// logBuffer is a bounded, locked buffer that stops taking writes once closed.
type logBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	closed bool
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	if l.b.Len()+len(p) > logKeep {
		old := l.b.Bytes()[l.b.Len()/2:]
		kept := append([]byte("[older entries dropped]\n"), old...)
		l.b.Reset()
		l.b.Write(kept)
	}
	return l.b.Write(p)
}

func (l *logBuffer) close() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return bytes.Clone(l.b.Bytes())
}
