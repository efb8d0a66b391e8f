package local_test

import (
	"testing"

	"onebox/lease"
	"onebox/lease/leasetest"
	"onebox/lease/local"
)

func TestConformance(t *testing.T) {
	l := local.New() // one process: every holder shares it
	leasetest.Run(t, func(*testing.T) (lease.Locker, func()) { return l, nil }, leasetest.Options{})
}
