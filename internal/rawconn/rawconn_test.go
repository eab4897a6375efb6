package rawconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// packet frames payload as the server's packet number seq.
func packet(seq byte, payload []byte) []byte {
	h := []byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}
	return append(h, payload...)
}

// greeting is a MariaDB-like protocol 10 greeting naming mysql_native_password.
func greeting() []byte {
	var b bytes.Buffer
	b.WriteByte(10)
	b.WriteString("10.11.19-MariaDB\x00")
	binary.Write(&b, binary.LittleEndian, uint32(42))
	b.WriteString("abcdefgh\x00")
	// PROTOCOL_41 | TRANSACTIONS | SECURE_CONNECTION, then PLUGIN_AUTH | MULTI_*.
	binary.Write(&b, binary.LittleEndian, uint16(0x0200|0x2000|0x8000|0x0001))
	b.WriteByte(45)
	binary.Write(&b, binary.LittleEndian, uint16(2))
	binary.Write(&b, binary.LittleEndian, uint16((0x80000|0x10000|0x20000)>>16))
	b.WriteByte(21)
	b.Write(make([]byte, 10))
	b.WriteString("ijklmnopqrst\x00")
	b.WriteString("mysql_native_password\x00")
	return b.Bytes()
}

// fakeServer answers a connection with a greeting, reads the client's answer and
// then sends answers (the authentication's), reading the client's packet between
// two; what the client sent after its first answer is returned on got once it
// closes or 2 s pass.
func fakeServer(t *testing.T, answers ...[]byte) (*mysql.Config, <-chan []byte) {
	t.Helper()
	client, server := net.Pipe()
	got := make(chan []byte, 1)
	go func() {
		defer server.Close()
		server.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := server.Write(packet(0, greeting())); err != nil {
			got <- nil
			return
		}
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(server, hdr); err != nil {
			got <- nil
			return
		}
		body := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
		io.ReadFull(server, body)
		seq := hdr[3] + 1
		var sent []byte
		for i, a := range answers {
			if _, err := server.Write(packet(seq, a)); err != nil {
				break
			}
			if i == len(answers)-1 {
				break
			}
			// The client's answer to a switch or to more data, before the next.
			if _, err := io.ReadFull(server, hdr); err != nil {
				break
			}
			body := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
			io.ReadFull(server, body)
			sent = append(sent, body...)
			seq = hdr[3] + 1
		}
		rest, _ := io.ReadAll(server)
		got <- append(sent, rest...)
	}()
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = "baton", "the-secret", "tcp", "198.18.0.1:3306"
	mc.Timeout = 2 * time.Second
	mc.DialFunc = func(context.Context, string, string) (net.Conn, error) { return client, nil }
	return mc, got
}

// Without TLS a server that asks for the password in clear, or for more than
// caching_sha2_password's fast authentication, is refused and never gets it; one
// that takes a scrambled password (with or without a switch to another such
// plugin) is connected to.
func TestAuthGuard(t *testing.T) {
	ok := []byte{0x00, 0, 0, 2, 0, 0, 0}
	for _, tc := range []struct {
		name    string
		answers [][]byte
		refused bool
	}{
		{"native password", [][]byte{ok}, false},
		{"a switch to ed25519's scramble", [][]byte{append([]byte("\xfeclient_ed25519\x00"), bytes.Repeat([]byte{1}, 32)...), ok}, false},
		{"a switch to the clear password", [][]byte{[]byte("\xfemysql_clear_password\x00"), ok}, true},
		{"a switch to sha256_password", [][]byte{append([]byte("\xfesha256_password\x00"), bytes.Repeat([]byte{1}, 20)...), ok}, true},
		{"caching_sha2's full authentication", [][]byte{{0x01, 4}, ok}, true},
		{"a public key sent unasked", [][]byte{[]byte("\x01-----BEGIN PUBLIC KEY-----"), ok}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc, got := fakeServer(t, tc.answers...)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c, err := Dial(ctx, mc, 0)
			if c != nil {
				c.Close()
			}
			sent := <-got
			if tc.refused {
				if err == nil || !strings.Contains(err.Error(), "refused") {
					t.Fatalf("Dial: %v, want refused", err)
				}
			} else if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if bytes.Contains(sent, []byte("the-secret")) {
				t.Fatalf("the password went on the wire: %q", sent)
			}
		})
	}
}
