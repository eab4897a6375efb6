package agent

import (
	"testing"

	"go.uber.org/zap"
)

// testAgent is an agent made from the configuration y, not started.
func testAgent(t *testing.T, y string) *Agent {
	t.Helper()
	c, err := Parse([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(c, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return a
}
