// Package deploy holds no code: it is the home of the files an operator installs next
// to Baton (the systemd unit, an example configuration, Prometheus alert rules, a
// Grafana dashboard) and of the tests that check them, so that `go test ./...` and
// `make test` cover them too. Nothing here is compiled into a binary.
package deploy
