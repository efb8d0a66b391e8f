// Package handover passes a running process's listening sockets to its
// replacement, so a deploy on one box drops no connection: on request
// the process starts a new copy of its executable (the binary now
// installed at that path) with the sockets inherited, and only when
// the copy says it is ready is the old process told to drain and exit.
// If the copy exits or never becomes ready, the old process keeps
// serving: that is the rollback.
//
// It is github.com/cloudflare/tableflip underneath. The sockets are the
// same kernel sockets in both processes (not SO_REUSEPORT, whose closing
// listener resets the connections queued on it), so a connection waiting
// in the accept queue is taken by whichever process accepts next.
package handover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cloudflare/tableflip"
)

// Handover is one process's end of the hand-over. A nil *Handover
// listens afresh and never hands over: a process that is not the only
// one serving on its addresses (a test running the service in-process).
type Handover struct {
	upg      *tableflip.Upgrader
	replaced chan struct{} // closed by Run once a replacement is ready
}

// Options configure New.
type Options struct {
	// ReadyTimeout bounds how long a replacement may take to become
	// ready (open and migrate the database, pass its checks) before it
	// is killed and the upgrade fails. Default one minute.
	ReadyTimeout time.Duration
}

// New makes the process's Handover. There can be only one per process
// (the sockets and the pipe to a parent are the process's), so main
// calls it once.
func New(o Options) (*Handover, error) {
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: o.ReadyTimeout})
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	return &Handover{upg: upg, replaced: make(chan struct{})}, nil
}

// Listen returns the listener on network and addr that the parent
// handed over, or a new one; either way it is handed to the next
// replacement.
func (h *Handover) Listen(network, addr string) (net.Listener, error) {
	if h == nil {
		return net.Listen(network, addr)
	}
	ln, err := h.upg.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	return ln, nil
}

// Inherited reports whether this process replaces a parent.
func (h *Handover) Inherited() bool { return h != nil && h.upg.HasParent() }

// Ready polls ready every interval until it reports true, then writes
// this process's id to pidFile (if not empty: systemd's PIDFile= follows
// the service's main process through it) and tells the parent, if any,
// to drain and exit. It returns ctx's error if ctx ends first, in which
// case the parent keeps serving.
func (h *Handover) Ready(ctx context.Context, pidFile string, ready func(context.Context) bool) error {
	const interval = 100 * time.Millisecond
	for !ready(ctx) {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if pidFile != "" {
		if err := writePID(pidFile, os.Getpid()); err != nil {
			return fmt.Errorf("handover: pid file: %w", err)
		}
	}
	if h == nil {
		return nil
	}
	if err := h.upg.Ready(); err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	return nil
}

// Replaced is closed once a replacement is ready and this process
// should drain and exit. The replacement then accepts on the same
// listening sockets, so this process should stop accepting at once (see
// ops.RunOptions.HandedOver). Never closed on a plain shutdown: then
// this process is the only one accepting. Nil for a nil Handover: never.
func (h *Handover) Replaced() <-chan struct{} {
	if h == nil {
		return nil
	}
	return h.replaced
}

// Run starts an upgrade for each value on upgrades (SIGHUP, in main)
// until ctx ends or an upgrade succeeds, and logs each outcome. An
// upgrade fails while the previous one is still running, before this
// process is ready, and while its own parent has not exited yet.
func (h *Handover) Run(ctx context.Context, upgrades <-chan os.Signal, log *slog.Logger) {
	if h == nil {
		return
	}
	defer h.upg.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.upg.Exit():
			return
		case <-upgrades:
			log.Info("upgrade: starting a new process", "executable", os.Args[0])
			if err := h.upg.Upgrade(); err != nil {
				// The new process is gone (it exited, or was killed at
				// ReadyTimeout); this one serves on.
				log.Error("upgrade failed; this process keeps serving", "err", err.Error())
				continue
			}
			log.Info("upgrade: the new process is ready; draining")
			close(h.replaced)
			return
		}
	}
}

// writePID replaces path with pid atomically, so a reader never sees
// a half-written file.
func writePID(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, harmlessly absent
	_, werr := tmp.WriteString(strconv.Itoa(pid) + "\n")
	if err := errors.Join(werr, tmp.Chmod(0o644), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
