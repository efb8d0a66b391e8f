package sqlite_test

import (
	"strings"
	"testing"

	"onebox/store"
	"onebox/store/sqlite"
)

func TestExplain(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	tests := []struct{ query, want string }{
		// Parameters stay unbound, and write statements explain on the
		// query-only reader pool.
		{"SELECT id FROM users WHERE id = ?", "users USING"},
		{"SELECT u.id FROM users u JOIN sessions s ON s.user_id = u.id WHERE s.token_hash = ?", "SEARCH"},
		{"UPDATE users SET bio = ? WHERE id = ?", "users USING"},
		{"SELECT ?2 = '' OR EXISTS (SELECT 1 FROM users WHERE id = ?1)", "users USING"},
		{"DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?", "sessions"},
		{"BEGIN IMMEDIATE", ""},
	}
	for _, tt := range tests {
		plan, err := s.Explain(t.Context(), tt.query)
		if err != nil {
			t.Errorf("%s: %v", tt.query, err)
			continue
		}
		if !strings.Contains(plan, tt.want) || (tt.want == "") != (plan == "") {
			t.Errorf("%s: plan %q, want it to contain %q", tt.query, plan, tt.want)
		}
	}
	if _, err := s.Explain(t.Context(), "goqite.SendTx"); err == nil {
		t.Error("Explain of a non-statement: no error")
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	mustCreateUser(t, s)
	if _, err := s.ListUsers(t.Context(), store.ListUsersParams{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.WriterOpen != 1 || st.ReaderOpen < 1 || st.WriterInUse != 0 || st.WriterWait < 0 {
		t.Fatalf("stats %+v", st)
	}
}
