package agent

// The etcd permissions Baton's agent needs, and the start-up check that names the
// missing ones instead of letting a failover fail on them later: the etcd side of
// grants.go. docs/configuration.md ("etcd permissions") has the role as etcdctl
// commands.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/baton-ha/baton/cluster"
)

// etcdAccessTimeout bounds each call of the access check.
const etcdAccessTimeout = 2 * time.Second

// EtcdOp is one kind of etcd call the agent makes, with why.
type EtcdOp struct {
	Name string
	Why  string
}

// EtcdOps are the calls the agent makes on its cluster's prefix, in the order the
// access check tries them. Every one needs read and write permission on the whole
// prefix /baton/<cluster>/ and on nothing else: a role with `readwrite` on that
// prefix (etcdctl role grant-permission ROLE --prefix=true readwrite /baton/CLUSTER/).
func EtcdOps() []EtcdOp {
	return []EtcdOp{
		{"lease grant", "the agent's session lease, its node status and the leader key live on"},
		{"put", "publish the node's status, the leader key, the coordinator's election, decisions, history"},
		{"get", "read the cluster's state"},
		{"range over the prefix", "read every key of the cluster in one transaction"},
		{"watch the prefix", "the agent's watched copy of the cluster's keys"},
		{"txn", "every change of the primary of record is a transaction comparing revisions"},
		{"lease keep-alive", "renew the session (etcd asks write permission on the keys on the lease)"},
		{"delete", "the leader key when fenced, an intent withdrawn, old history"},
		{"lease revoke", "end a session at once (etcd asks write permission on the keys on the lease)"},
	}
}

// EtcdRoleCommands are the etcdctl commands that give user what the agent of cluster
// needs (EtcdOps) through the role baton-<cluster>.
func EtcdRoleCommands(clusterName, user string) []string {
	role := "baton-" + clusterName
	if user == "" {
		user = "USER"
	}
	return []string{
		"etcdctl role add " + role,
		"etcdctl role grant-permission " + role + " --prefix=true readwrite " + cluster.NewKeys(clusterName).Prefix,
		"etcdctl user grant-role " + user + " " + role,
	}
}

// ErrEtcdAccess is wrapped by every EtcdAccessError.
var ErrEtcdAccess = errors.New("agent: missing etcd permissions")

// EtcdAccessError names what the agent's etcd user cannot do on its cluster's
// prefix, and how to grant it.
type EtcdAccessError struct {
	User    string // "" when not known (no etcd.username, no client certificate)
	Prefix  string
	Denied  []string // "put: etcdserver: permission denied", ...
	Partial []string // "write on part of the prefix only", from the user's roles
	Roles   []string // the user's roles and what they grant, when readable
	Cluster string
}

func (e *EtcdAccessError) Error() string {
	var b strings.Builder
	who := "the agent's etcd user"
	if e.User != "" {
		who = fmt.Sprintf("etcd user %q", e.User)
	}
	fmt.Fprintf(&b, "%s lacks what the agent needs on %s: ", who, e.Prefix)
	b.WriteString(strings.Join(append(append([]string(nil), e.Denied...), e.Partial...), "; "))
	if len(e.Roles) > 0 {
		fmt.Fprintf(&b, " (its roles: %s)", strings.Join(e.Roles, ", "))
	}
	if e.User == "" {
		b.WriteString("; give etcd.username, or a client certificate (etcd.tls.cert) whose common name is an etcd user, and")
	}
	b.WriteString("; grant it with: ")
	b.WriteString(strings.Join(EtcdRoleCommands(e.Cluster, e.User), "; "))
	return b.String()
}

// Unwrap lets errors.Is find ErrEtcdAccess.
func (e *EtcdAccessError) Unwrap() error { return ErrEtcdAccess }

// EtcdAccess is what the access check found.
type EtcdAccess struct {
	// AuthEnabled: etcd checks users and roles. Off, anyone who reaches etcd may
	// write every cluster's keys.
	AuthEnabled bool
	// AuthKnown: etcd said whether it checks them.
	AuthKnown bool
	User      string
}

// accessDenied says whether err is etcd refusing the call for who is calling.
func accessDenied(err error) bool {
	if err == nil {
		return false
	}
	// A watch's refusal comes as a (wrapped) gRPC status, the others as etcd's
	// errors: the description is what they share.
	if s, ok := status.FromError(err); ok && s.Code() == codes.PermissionDenied {
		return true
	}
	for _, e := range []error{rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty, rpctypes.ErrAuthFailed,
		rpctypes.ErrUserNotFound, rpctypes.ErrInvalidAuthToken, rpctypes.ErrAuthOldRevision} {
		if errors.Is(err, e) || strings.Contains(err.Error(), rpctypes.ErrorDesc(e)) {
			return true
		}
	}
	return false
}

// CheckEtcdAccess tries, on the key cluster.Keys.AccessCheck(node) on a lease of a
// few seconds, every kind of call the agent makes (EtcdOps), and reads the user's
// roles when etcd lets it. It returns an *EtcdAccessError naming every call etcd
// refused for this user, or another error when etcd could not be asked (unreachable:
// the caller tries again). user is the etcd user the client authenticates as, ""
// when not known; it is only used in messages and to read the user's roles.
func CheckEtcdAccess(ctx context.Context, cli *clientv3.Client, clusterName, node, user string) (EtcdAccess, error) {
	keys := cluster.NewKeys(clusterName)
	key := keys.AccessCheck(node)
	acc := EtcdAccess{User: user}
	aerr := &EtcdAccessError{User: user, Prefix: keys.Prefix, Cluster: clusterName}
	call := func(timeout time.Duration, f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return f(cctx)
	}
	// try runs one call: nil when it worked or etcd refused it (noted), else the
	// error that stops the check.
	try := func(op string, f func(context.Context) error) (bool, error) {
		err := call(etcdAccessTimeout, f)
		switch {
		case err == nil:
			return true, nil
		case accessDenied(err):
			aerr.Denied = append(aerr.Denied, op+": "+err.Error())
			return false, nil
		default:
			return false, fmt.Errorf("etcd access check: %s %s: %w", op, key, err)
		}
	}

	if err := call(etcdAccessTimeout, func(c context.Context) error {
		st, err := cli.AuthStatus(c)
		if err == nil {
			acc.AuthKnown, acc.AuthEnabled = true, st.Enabled
		}
		return err
	}); err != nil && !accessDenied(err) {
		return acc, fmt.Errorf("etcd access check: auth status: %w", err)
	}

	var lease clientv3.LeaseID
	leased, err := try("lease grant", func(c context.Context) error {
		resp, err := cli.Grant(c, 5)
		if err == nil {
			lease = resp.ID
		}
		return err
	})
	if err != nil {
		return acc, err
	}
	// The key goes with the lease even if this agent dies halfway; the lease is
	// revoked at the end, or on the way out.
	var putOpts []clientv3.OpOption
	revoked := false
	if leased {
		putOpts = append(putOpts, clientv3.WithLease(lease))
		defer func() {
			if !revoked {
				_ = call(etcdAccessTimeout, func(c context.Context) error { _, err := cli.Revoke(c, lease); return err })
			}
		}()
	}
	value := "access check " + time.Now().UTC().Format(time.RFC3339Nano)
	steps := []struct {
		op string
		f  func(context.Context) error
	}{
		{"put", func(c context.Context) error {
			_, err := cli.Put(c, key, value, putOpts...)
			return err
		}},
		{"get", func(c context.Context) error { _, err := cli.Get(c, key); return err }},
		{"range over the prefix", func(c context.Context) error {
			_, err := cli.Get(c, keys.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			return err
		}},
		{"watch the prefix", func(c context.Context) error {
			// etcd answers a watch it accepts with its creation, one it refuses with
			// its cancellation.
			wc := cli.Watch(clientv3.WithRequireLeader(c), keys.Prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			for resp := range wc {
				if err := resp.Err(); err != nil {
					return err
				}
				if resp.Created || len(resp.Events) > 0 {
					return nil
				}
			}
			return c.Err()
		}},
		{"txn", func(c context.Context) error {
			_, err := cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
				Then(clientv3.OpPut(key, value, putOpts...)).Else(clientv3.OpGet(key)).Commit()
			return err
		}},
		{"lease keep-alive", func(c context.Context) error {
			if !leased {
				return nil
			}
			_, err := cli.KeepAliveOnce(c, lease)
			return err
		}},
		{"delete", func(c context.Context) error { _, err := cli.Delete(c, key); return err }},
	}
	for _, s := range steps {
		if _, err := try(s.op, s.f); err != nil {
			return acc, err
		}
	}
	if leased {
		// Revoke with a key on the lease: etcd asks write permission on it.
		ok, err := try("lease revoke", func(c context.Context) error {
			if _, err := cli.Put(c, key, value, clientv3.WithLease(lease)); err != nil && !accessDenied(err) {
				return err
			}
			_, err := cli.Revoke(c, lease)
			return err
		})
		if err != nil {
			return acc, err
		}
		revoked = ok
	}

	// What the user's roles grant, when etcd lets it read them (a user may read its
	// own): a role with write on a few keys only passes the calls above on the
	// check's key and fails later on another.
	if acc.AuthEnabled && user != "" {
		roles, partial, err := rolesCover(ctx, cli, user, keys.Prefix)
		switch {
		case err == nil:
			aerr.Roles, aerr.Partial = roles, partial
		case !accessDenied(err):
			return acc, fmt.Errorf("etcd access check: read the roles of %q: %w", user, err)
		}
	}
	if len(aerr.Denied) > 0 || len(aerr.Partial) > 0 {
		return acc, aerr
	}
	return acc, nil
}

// rolesCover reads user's roles and says, for each of read and write, whether they
// cover the whole prefix; it returns the roles as "name (perm key..end)" and what is
// missing.
func rolesCover(ctx context.Context, cli *clientv3.Client, user, prefix string) (roles, missing []string, err error) {
	uctx, cancel := context.WithTimeout(ctx, etcdAccessTimeout)
	u, err := cli.UserGet(uctx, user)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	if slices.Contains(u.Roles, "root") {
		return []string{"root"}, nil, nil
	}
	var read, write []span
	for _, r := range u.Roles {
		rctx, cancel := context.WithTimeout(ctx, etcdAccessTimeout)
		resp, err := cli.RoleGet(rctx, r)
		cancel()
		if err != nil {
			return nil, nil, err
		}
		var perms []string
		for _, p := range resp.Perm {
			s := spanOf(p.Key, p.RangeEnd)
			if p.PermType == authpb.READ || p.PermType == authpb.READWRITE {
				read = append(read, s)
			}
			if p.PermType == authpb.WRITE || p.PermType == authpb.READWRITE {
				write = append(write, s)
			}
			perms = append(perms, strings.ToLower(p.PermType.String())+" "+s.String())
		}
		roles = append(roles, fmt.Sprintf("%s (%s)", r, strings.Join(perms, ", ")))
	}
	want := spanOf([]byte(prefix), []byte(clientv3.GetPrefixRangeEnd(prefix)))
	if !covers(read, want) {
		missing = append(missing, "its roles do not grant read on the whole prefix")
	}
	if !covers(write, want) {
		missing = append(missing, "its roles do not grant write on the whole prefix")
	}
	return roles, missing, nil
}

// span is a range of keys [from, to); to nil means no end.
type span struct{ from, to []byte }

// spanOf is the range of an etcd permission: one key when end is empty, every key
// from key on when end is "\x00", else [key, end).
func spanOf(key, end []byte) span {
	switch {
	case len(end) == 0:
		return span{from: key, to: append(slices.Clone(key), 0)}
	case len(end) == 1 && end[0] == 0:
		return span{from: key}
	}
	return span{from: key, to: end}
}

func (s span) String() string {
	switch {
	case s.to == nil:
		return string(s.from) + " and every key after it"
	case bytes.Equal(s.to, append(slices.Clone(s.from), 0)):
		return string(s.from)
	case string(s.to) == clientv3.GetPrefixRangeEnd(string(s.from)):
		return string(s.from) + "*"
	}
	return fmt.Sprintf("[%s, %s)", s.from, s.to)
}

// covers says whether the union of spans holds every key of want.
func covers(spans []span, want span) bool {
	spans = slices.Clone(spans)
	slices.SortFunc(spans, func(a, b span) int { return bytes.Compare(a.from, b.from) })
	cur := want.from
	for _, s := range spans {
		if bytes.Compare(s.from, cur) > 0 {
			break // a gap before this one
		}
		if s.to == nil {
			return true
		}
		if bytes.Compare(s.to, cur) > 0 {
			cur = s.to
		}
		if want.to != nil && bytes.Compare(cur, want.to) >= 0 {
			return true
		}
	}
	return want.to != nil && bytes.Compare(cur, want.to) >= 0
}

// EtcdUser is the etcd user the agent authenticates as: etcd.username, else the
// common name of its client certificate (etcd takes a verified client certificate's
// common name as the user name when no password is given), else "".
func (e Etcd) EtcdUser() string {
	if e.Username != "" {
		return e.Username
	}
	if e.TLS == nil || e.TLS.Cert == "" {
		return ""
	}
	b, err := os.ReadFile(e.TLS.Cert)
	if err != nil {
		return ""
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return ""
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ""
	}
	return c.Subject.CommonName
}
