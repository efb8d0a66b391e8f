package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Dependencies run one way: the queue and the worker never import the
// operator tooling (they reach it through package correlation and hooks
// that main wires), and the API never imports the worker (it shares names
// with it through package photos).
func TestDependenciesRunOneWay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pkgs      []string
		forbidden string
	}{
		{[]string{"./jobs/...", "./pipeline/..."}, "onebox/ops"},
		{[]string{"./app"}, "onebox/pipeline"},
		{[]string{"./correlation", "./photos"}, "onebox/ops"},
		{[]string{"./lease/..."}, "onebox/app"},
	} {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, tc.pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %v: %v\n%s", tc.pkgs, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == tc.forbidden || strings.HasPrefix(dep, tc.forbidden+"/") {
				t.Errorf("%v imports %s", tc.pkgs, dep)
			}
		}
	}
}

// The design names goqite as the queue: the binary's own code, not only
// tests and benchmarks, enqueues with it (jobs/sqlite's Send and SendTx).
func TestProductionUsesGoqite(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, "./jobs/sqlite").CombinedOutput()
	if err != nil {
		t.Fatalf("go list ./jobs/sqlite: %v\n%s", err, out)
	}
	if imports := strings.Fields(string(out)); !slices.Contains(imports, "maragu.dev/goqite") {
		t.Errorf("jobs/sqlite does not import maragu.dev/goqite outside its tests; it imports %v", imports)
	}
	out, err = exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps .: %v\n%s", err, out)
	}
	if !slices.Contains(strings.Fields(string(out)), "maragu.dev/goqite") {
		t.Error("the onebox binary does not depend on maragu.dev/goqite")
	}
}
