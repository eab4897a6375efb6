package bench

import (
	"errors"
	"strings"
	"testing"
)

func TestWriteSecure(t *testing.T) {
	var md strings.Builder
	plain := FailoverResult{Fault: "kill", FailoverMS: []int64{1100, 1200, 1300}, P50FailoverMS: 1200, MaxFailoverMS: 1300, AckedWrites: 300}
	secure := FailoverResult{Fault: "kill", Secure: true, FailoverMS: []int64{1250, 1350}, P50FailoverMS: 1250, MaxFailoverMS: 1350, Errors: []string{"trial 3: x"}}
	runs := []switchoverRun{{From: "db1", To: "db2", OK: true, WriteBlockMS: 120, WriterGapMS: 150}, {From: "db2", To: "db1", OK: false}}
	writeSecure(&md, 3, plain, secure, runs, nil, nil, errors.New("no sandbox"))
	out := md.String()
	for _, want := range []string{
		"## Secure vs plain text", "--trials 3 [--secure]",
		"| plain text | 1200 ms | 1300 ms | 1100, 1200, 1300 |",
		"| secure | 1250 ms | 1350 ms | 1250, 1350 |", "trial 3: x",
		"| plain text | 1/2 | 120 ms | 120 ms | 120 | 150 |",
		"| secure | not measured: no sandbox |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
}
