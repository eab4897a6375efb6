package replication

import (
	"fmt"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Flavor is the kind of server: MariaDB and MySQL differ in their GTIDs,
// their replication statements and their variables.
type Flavor int

const (
	// FlavorUnknown is the zero value: not detected yet.
	FlavorUnknown Flavor = iota
	// FlavorMariaDB is MariaDB (10.5 or later; tested with 10.11).
	FlavorMariaDB
	// FlavorMySQL is Oracle MySQL 8.0.23 or later (or a compatible fork such
	// as Percona Server).
	FlavorMySQL
)

func (f Flavor) String() string {
	switch f {
	case FlavorMariaDB:
		return "mariadb"
	case FlavorMySQL:
		return "mysql"
	default:
		return "unknown"
	}
}

// ParseFlavor is the inverse of String ("mariadb", "mysql").
func ParseFlavor(s string) (Flavor, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "mariadb":
		return FlavorMariaDB, nil
	case "mysql":
		return FlavorMySQL, nil
	default:
		return FlavorUnknown, fmt.Errorf("replication: unknown flavor %q (want mariadb or mysql)", s)
	}
}

// goMySQL is the flavor name go-mysql uses.
func (f Flavor) goMySQL() string {
	if f == FlavorMariaDB {
		return gomysql.MariaDBFlavor
	}
	return gomysql.MySQLFlavor
}

// DetectFlavor tells the flavor from @@version and @@version_comment.
// MariaDB always puts "MariaDB" in @@version ("10.11.6-MariaDB-0+deb12u1-log")
// while @@version_comment is distribution text ("Debian 12"); MySQL and its
// forks never do ("8.0.36", "MySQL Community Server - GPL",
// "8.0.36-28", "Percona Server (GPL), Release 28").
func DetectFlavor(version, versionComment string) Flavor {
	if strings.Contains(strings.ToLower(version), "mariadb") ||
		strings.Contains(strings.ToLower(versionComment), "mariadb") {
		return FlavorMariaDB
	}
	return FlavorMySQL
}
