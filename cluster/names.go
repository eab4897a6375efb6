package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Root is where every cluster's keys are: /baton/<cluster>/.
const Root = "/baton/"

// MaxNameLen is the longest cluster or node name: a node's name goes into a
// heartbeat row of 64 characters.
const MaxNameLen = 64

// CheckName accepts a cluster or node name: what is safe in an etcd key, a heartbeat
// row, a log line and a hook's environment: letters, digits, '.', '_' and '-',
// starting with a letter or digit, at most MaxNameLen characters. Its error names
// field, the place the name came from ("cluster", "--to", ...).
func CheckName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: required", field)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s %q: longer than %d characters", field, s, MaxNameLen)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !ok && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			return fmt.Errorf("%s %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", field, s)
		}
	}
	return nil
}

// Names lists, sorted and once each, the clusters that keys belong to: the first
// path element under Root of each key that has one below it.
func Names(keys []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, Root)
		if !ok {
			continue
		}
		name, _, ok := strings.Cut(rest, "/")
		if !ok || name == "" || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// List reads the names of the clusters that have keys in etcd, within
// DefaultEtcdTimeout.
func List(ctx context.Context, cli *clientv3.Client) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultEtcdTimeout)
	defer cancel()
	resp, err := cli.Get(ctx, Root, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list clusters under %s: %w", Root, err)
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return Names(keys), nil
}

// Exists says whether the cluster has any key in etcd. Only agents make a cluster
// (its first one publishes its node, and bootstraps the primary of record): an
// operator's command that names a cluster with no key names the wrong one, and must
// not create it.
func (s *Store) Exists(ctx context.Context) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.Keys.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read cluster %s: %w", strings.TrimSuffix(strings.TrimPrefix(s.Keys.Prefix, Root), "/"), err)
	}
	return resp.Count > 0, nil
}
