// Package litestream restores the latest state of a database from its
// Litestream replica, with the litestream binary (v0.5; onebox does not
// link Litestream, which runs beside it as its own process).
package litestream

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"onebox/backup"
)

var _ backup.Replica = (*Replica)(nil)

// Replica is the replica that Config's entry for the database DB
// replicates to.
type Replica struct {
	Bin    string // the litestream binary, a path or a name looked up in PATH
	Config string // litestream.yml
	DB     string // the database's path as Config names it (absolute, or relative to the working directory)
}

// New returns the Replica of db in config, restored with bin.
func New(bin, config, db string) *Replica {
	return &Replica{Bin: bin, Config: config, DB: db}
}

// Restore runs `litestream restore -config Config -o path DB`: the
// latest snapshot and every later change in the replica, written to
// path, which must not exist. Litestream checks each file's checksum
// as it reads it. The error quotes litestream's output.
func (r *Replica) Restore(ctx context.Context, path string) error {
	cmd := exec.CommandContext(ctx, r.Bin, "restore", "-config", r.Config, "-o", path, r.DB)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("litestream restore -config %s -o %s %s: %w: %s", r.Config, path, r.DB, err, strings.TrimSpace(lastLine(out.String())))
	}
	return nil
}

// lastLine is the end of litestream's log, where it says why it failed.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
