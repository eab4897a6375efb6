package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
)

// reload re-reads the state file: another invocation may have changed it.
func (c *Cluster) reload() error {
	b, err := os.ReadFile(stateFile(c.Dir))
	if err != nil {
		return fmt.Errorf("read sandbox state: %w", err)
	}
	log := c.log
	*c = Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return fmt.Errorf("parse sandbox state: %w", err)
	}
	c.log = log
	return nil
}

// Refresh asks every node what it is now (its role may have changed since `up`:
// Baton moves the primary) and records it. It is what `baton sandbox status` shows.
func (c *Cluster) Refresh(ctx context.Context) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.reload(); err != nil {
		return err
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		role := liveRole(ctx, n)
		switch {
		case role != "down":
			n.Role, n.State = role, "running"
		case alive(n.PID):
			n.State = "not answering" // e.g. stopped, frozen or cut off: keep its last role
		default:
			n.State = "down"
		}
	}
	return c.save()
}
