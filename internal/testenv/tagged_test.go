package testenv

import (
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// needsMachine are the calls that make a test an integration test: it needs a sandbox
// (root, MariaDB, network namespaces) or a tool only `make deps` installs.
var needsMachine = map[string]bool{
	"sandboxtest.Main": true, "sandboxtest.Up": true, "sandboxtest.Binary": true,
	"sandboxtest.LabBinary": true, "sandboxtest.Need": true, "testenv.Need": true,
}

// TestIntegrationTestsTagged: every test file that calls for a sandbox or a missing
// tool is built only with the integration tag, so that `go test ./...` and
// `make unit` run the pure tests alone, as any user, in seconds.
func TestIntegrationTestsTagged(t *testing.T) {
	root := filepath.Join("..", "..")
	var files, tagged int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		files++
		integration := integrationOnly(f)
		if integration {
			tagged++
		}
		var calls []string
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && needsMachine[id.Name+"."+sel.Sel.Name] && !slices.Contains(calls, id.Name+"."+sel.Sel.Name) {
					calls = append(calls, id.Name+"."+sel.Sel.Name)
				}
			}
			return true
		})
		if len(calls) > 0 && !integration {
			t.Errorf("%s calls %s but is not built with the integration tag alone: add //go:build integration, or move those tests to a file that has it", path, strings.Join(calls, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 || tagged < 10 {
		t.Fatalf("found %d test files, %d with the integration tag: not the repository's root?", files, tagged)
	}
}

// integrationOnly says whether f's build constraint holds with the integration tag
// and not without it.
func integrationOnly(f *ast.File) bool {
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			if !constraint.IsGoBuild(c.Text) {
				continue
			}
			expr, err := constraint.Parse(c.Text)
			if err != nil {
				return false
			}
			with := expr.Eval(func(tag string) bool { return tag == "integration" || tag == "linux" || tag == "amd64" })
			without := expr.Eval(func(tag string) bool { return tag == "linux" || tag == "amd64" })
			return with && !without
		}
	}
	return false
}
