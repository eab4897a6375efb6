package failpoint

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{"after-start-slave", []string{AfterStartSlave}, ""},
		{" before-promote , before-vip-acquire,", []string{BeforePromote, BeforeVIPAcquire}, ""},
		{"session-create,session-create", []string{SessionCreate}, ""},
		{"before-promote,after-start", nil, `"after-start": unknown step`},
	}
	for _, tc := range cases {
		got, err := Parse(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Parse(%q): error %v, want one saying %q", tc.in, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.in, err)
		case !slices.Equal(got, tc.want):
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestArmedStopsOncePerStep(t *testing.T) {
	cases := []struct {
		name  string
		armed []string
		hits  []string
		want  []bool
		left  []string
	}{
		{"nothing armed", nil, []string{BeforePromote}, []bool{false}, nil},
		{"armed step reached twice", []string{BeforePromote}, []string{BeforePromote, BeforePromote}, []bool{true, false}, nil},
		{"another step passes", []string{BeforePromote}, []string{AfterStartSlave, BeforeVIPAcquire}, []bool{false, false}, []string{BeforePromote}},
		{"two armed, each once", []string{BeforePromote, BeforeVIPAcquire},
			[]string{BeforeVIPAcquire, BeforePromote, BeforeVIPAcquire}, []bool{true, true, false}, nil},
	}
	for _, tc := range cases {
		a := NewArmed(tc.armed)
		for i, h := range tc.hits {
			if got := a.Take(h); got != tc.want[i] {
				t.Errorf("%s: hit %d (%s) stopped %t, want %t", tc.name, i, h, got, tc.want[i])
			}
		}
		if left := a.Pending(); !slices.Equal(left, tc.left) {
			t.Errorf("%s: pending %v, want %v", tc.name, left, tc.left)
		}
	}
	var none *Armed
	if none.Take(BeforePromote) {
		t.Error("a nil Armed stopped")
	}
}

const childEnv = "BATON_FAILPOINT_TEST_CHILD"

// TestHitStopsOnlyTheTaggedBuild runs a child process armed at after-start-slave
// that reaches the step twice: built with -tags failpoint it stops itself once and
// goes on after SIGCONT; in the product's build it never stops.
func TestHitStopsOnlyTheTaggedBuild(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		Hit(AfterStartSlave)
		Hit(AfterStartSlave)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitStopsOnlyTheTaggedBuild$")
	cmd.Env = append(os.Environ(), childEnv+"=1", Env+"="+AfterStartSlave)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped, exited := false, false
	deadline := time.Now().Add(10 * time.Second)
wait:
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			if Enabled && !stopped {
				t.Fatalf("the child exited (%v) without stopping at the armed step; stderr: %s", err, stderr.String())
			}
			if err != nil {
				t.Fatalf("child: %v; stderr: %s", err, stderr.String())
			}
			exited = true
			break wait
		case <-time.After(10 * time.Millisecond):
		}
		if state(cmd.Process.Pid) != 'T' {
			continue
		}
		if !Enabled {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
			t.Fatal("the product's build stopped at a failpoint")
		}
		if stopped {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
			t.Fatal("stopped twice at the same step")
		}
		stopped = true
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	if !exited {
		_ = cmd.Process.Kill()
		t.Fatalf("the child did not exit within 10 s (stopped %t); stderr: %s", stopped, stderr.String())
	}
	if Enabled {
		if !stopped || !strings.Contains(stderr.String(), "after-start-slave reached") {
			t.Errorf("stopped %t; stderr: %s", stopped, stderr.String())
		}
	}
}

// state is the process state letter of /proc/PID/stat ('T': stopped), 0 if unknown.
func state(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}
