package main

import (
	"os/exec"
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
