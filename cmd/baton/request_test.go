package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
)

func TestWriteBlock(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// The checks that may refuse a switchover run before the intent is announced.
	switchover := []cluster.Step{{Name: "pre_hook", Took: ms(300)}, {Name: "rank", Took: ms(10)}, {Name: "open_writes", Took: ms(2)},
		{Name: "announce", Took: ms(3)}, {Name: "fence_old_primary", Took: ms(4)}, {Name: "final_gtid", Took: ms(2)},
		{Name: "catchup", Took: ms(5)}, {Name: "commit", Took: ms(1)}, {Name: "leader", Took: ms(10)}, {Name: "promote", Took: ms(20)},
		{Name: "post_hook", Took: ms(500)}}
	// A failover's fence runs beside stop_io, rank and catchup; it is recorded when it ends.
	failoverSteps := []cluster.Step{{Name: "announce", Took: ms(3)}, {Name: "stop_io", Took: ms(6)}, {Name: "rank", Took: ms(8)},
		{Name: "fence_old_primary", Took: ms(1000)}, {Name: "catchup", Took: ms(5)}, {Name: "commit", Took: ms(1)}, {Name: "promote", Took: ms(30)}}
	cases := []struct {
		name   string
		kind   string
		steps  []cluster.Step
		want   time.Duration
		wantOK bool
	}{
		{"switchover: announce to promote, checks before and hooks after not counted", "switchover", switchover, ms(45), true},
		{"failover: the concurrent fence is not added", "failover", failoverSteps, ms(53), true},
		{"refused before the announce", "switchover", switchover[:3], 0, false},
		{"refused after the announce, before promote", "switchover", switchover[:6], ms(9), false},
		{"promote failed", "switchover", append(append([]cluster.Step(nil), switchover[:9]...), cluster.Step{Name: "promote", Took: ms(15000), Error: "not promoted"}), ms(15025), false},
		{"no steps", "switchover", nil, 0, false},
		{"semi-sync: on to the end of can_commit, a replica to acknowledge", "switchover",
			append(append([]cluster.Step(nil), switchover[:10]...), cluster.Step{Name: "can_commit", Took: ms(300)}, cluster.Step{Name: "post_hook", Took: ms(500)}),
			ms(345), true},
		{"a virtual IP: on to the end of address, after can_commit", "switchover",
			append(append([]cluster.Step(nil), switchover[:10]...), cluster.Step{Name: "can_commit", Took: ms(30)}, cluster.Step{Name: "address", Took: ms(7)},
				cluster.Step{Name: "post_hook", Took: ms(500)}),
			ms(82), true},
		{"a virtual IP without semi-sync: on to the end of address", "switchover",
			append(append([]cluster.Step(nil), switchover[:10]...), cluster.Step{Name: "address", Took: ms(20)}, cluster.Step{Name: "post_hook", Took: ms(500)}),
			ms(65), true},
		{"failover: through repoint_silent to the end of can_commit", "failover",
			append(append([]cluster.Step(nil), failoverSteps...), cluster.Step{Name: "repoint_silent", Took: ms(40)}, cluster.Step{Name: "can_commit", Took: ms(200)}),
			ms(293), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := writeBlock(tc.kind, tc.steps)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("writeBlock = %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestConfirmWithoutATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.WriteString("yes\n")
	w.Close()
	ok, err := confirm(r, io.Discard, "switchover?")
	if ok || err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("confirm on a pipe = %v, %v; want an error that says to pass --yes", ok, err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if ok, err := confirm(null, io.Discard, "switchover?"); ok || err == nil {
		t.Errorf("confirm on %s (a character device, not a terminal) = %v, %v; want an error", os.DevNull, ok, err)
	}
}
