package agent

// Secrets of the configuration: passwords that never print, and where they are read
// from (the file, a file it names, or the environment).

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Secret is a password. It prints, marshals (JSON, YAML) and logs as "[redacted]"
// (as "" when empty, so that "not set" stays visible); Reveal returns it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// String hides the secret from fmt and from zap.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalJSON hides the secret from /status, logs (zap.Any) and anything else that
// marshals a Config.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalYAML hides the secret from a Config written back out as YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// resolveSecrets fills the Secret fields: the environment wins, then the file, then
// the YAML value. A password both in the YAML and in a file is refused: one of them
// would be ignored, and which one is a guess.
func (c *Config) resolveSecrets(env func(string) string) error {
	var err error
	if c.MySQL.Password, err = resolveSecret("mysql", c.MySQL.Password, c.MySQL.PasswordFile, env(EnvMySQLPassword)); err != nil {
		return err
	}
	r := &c.MySQL.Replication
	if r.Password, err = resolveSecret("mysql.replication", r.Password, r.PasswordFile, env(EnvReplicationPassword)); err != nil {
		return err
	}
	if c.Etcd.Password, err = resolveSecret("etcd", c.Etcd.Password, c.Etcd.PasswordFile, env(EnvEtcdPassword)); err != nil {
		return err
	}
	if c.PeerSecret, err = resolveSecretField("peer_secret", "peer_secret_file", c.PeerSecret, c.PeerSecretFile, env(EnvPeerSecret)); err != nil {
		return err
	}
	return nil
}

func resolveSecret(field string, inline Secret, file, fromEnv string) (Secret, error) {
	return resolveSecretField(field+".password", field+".password_file", inline, file, fromEnv)
}

// resolveSecretField is resolveSecret for a secret whose fields are named
// inlineField and fileField.
func resolveSecretField(inlineField, fileField string, inline Secret, file, fromEnv string) (Secret, error) {
	if inline != "" && file != "" {
		return "", fmt.Errorf("config: %s and %s are both set: keep one", inlineField, fileField)
	}
	if fromEnv != "" {
		return Secret(fromEnv), nil
	}
	if file == "" {
		return inline, nil
	}
	if !filepath.IsAbs(file) {
		return "", fmt.Errorf("config: %s %q: must be an absolute path", fileField, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The error names the file, never its content.
		return "", fmt.Errorf("config: %s: %w", fileField, err)
	}
	// The file is a password, not a line: only the line ending an editor adds goes.
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("config: %s %s is empty", fileField, file)
	}
	if strings.ContainsAny(s, "\x00\n") {
		return "", fmt.Errorf("config: %s %s: holds more than one line or a NUL byte", fileField, file)
	}
	return Secret(s), nil
}
