package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndServer: the agent ends the process its server's pid file names, stopped
// or not, and says so once it is gone (here a zombie: its parent, this test, has
// not reaped it); it refuses, and sends nothing, when the file names another
// program or cannot be read.
func TestEndServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	here, err := os.Getwd() // the working directory of the processes started below
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a mariadbd working elsewhere is refused (another server's)", func(t *testing.T) {
		pid := processNamed(t, "mariadbd")
		if _, err := endServer(ctx, pidFile(t, strconv.Itoa(pid)), t.TempDir(), time.Now()); err == nil || !strings.Contains(err.Error(), "not the server's datadir") {
			t.Errorf("err = %v, want a refusal naming the datadir", err)
		}
		if exited(pid) {
			t.Error("another server was ended")
		}
	})
	t.Run("a frozen mariadbd is ended", func(t *testing.T) {
		pid := processNamed(t, "mariadbd")
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		note, err := endServer(ctx, pidFile(t, strconv.Itoa(pid)+"\n"), here, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(note, "ended with SIGKILL") || !exited(pid) {
			t.Errorf("note %q, gone %v: want the process ended", note, exited(pid))
		}
	})
	// A server that crashed and was started again after the hang was seen is not
	// the hung one: its pid file is newer than the hang.
	t.Run("a mariadbd started after the hang is refused", func(t *testing.T) {
		pid := processNamed(t, "mariadbd")
		if _, err := endServer(ctx, pidFile(t, strconv.Itoa(pid)), here, time.Now().Add(-time.Minute)); err == nil || !strings.Contains(err.Error(), "not the hung one") {
			t.Errorf("err = %v, want a refusal naming a server started since", err)
		}
		if exited(pid) {
			t.Error("the restarted server was ended")
		}
	})
	t.Run("when the hang began is not known: refused", func(t *testing.T) {
		pid := processNamed(t, "mariadbd")
		if _, err := endServer(ctx, pidFile(t, strconv.Itoa(pid)), here, time.Time{}); err == nil || exited(pid) {
			t.Errorf("err = %v, ended %v: want a refusal, the server left alone", err, exited(pid))
		}
	})
	t.Run("another program is refused", func(t *testing.T) {
		pid := processNamed(t, "postgres")
		if _, err := endServer(ctx, pidFile(t, strconv.Itoa(pid)), "", time.Now()); err == nil || !strings.Contains(err.Error(), "not the server") {
			t.Errorf("err = %v, want a refusal naming a stale pid file", err)
		}
		if exited(pid) {
			t.Error("the other program was ended")
		}
	})
	for name, content := range map[string]string{"garbage": "not a pid\n", "init": "1\n"} {
		t.Run("pid file holding "+name, func(t *testing.T) {
			if _, err := endServer(ctx, pidFile(t, content), "", time.Now()); err == nil {
				t.Error("no error")
			}
		})
	}
	t.Run("no pid file known", func(t *testing.T) {
		if _, err := endServer(ctx, "", "", time.Now()); err == nil || !strings.Contains(err.Error(), "not known") {
			t.Errorf("err = %v", err)
		}
		if _, err := endServer(ctx, filepath.Join(t.TempDir(), "missing.pid"), "", time.Now()); err == nil {
			t.Error("a missing pid file: no error")
		}
	})
}
