package ops_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"onebox/ops"
)

func TestDisk(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no statfs")
	}
	dir := t.TempDir()
	d, err := ops.DiskUsage(dir)
	if err != nil || d.Size == 0 || d.Free > d.Size {
		t.Fatalf("DiskUsage = %+v, %v", d, err)
	}
	if err := ops.DiskCheck(dir, 0).Probe(context.Background()); err != nil {
		t.Fatalf("check with no minimum: %v", err)
	}
	if err := ops.DiskCheck(dir, 1.01).Probe(context.Background()); err == nil {
		t.Fatal("a disk cannot have more than all of its space free")
	}
	if err := ops.DiskCheck(filepath.Join(dir, "missing"), 0).Probe(context.Background()); err == nil {
		t.Fatal("no error for a missing directory")
	}
}
