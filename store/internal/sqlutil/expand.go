package sqlutil

import (
	"fmt"
	"regexp"
	"strings"
)

// ContractMark, on a line of its own in a migration, says the migration
// contracts the schema on purpose: it removes what the release before it
// stopped using (expand, then contract a release later), and says so.
const ContractMark = "-- contract:"

var (
	// drop anything but an index (no query's result depends on one) or
	// a NOT NULL (relaxing it breaks no writer), or than a trigger, view
	// or function that the migration creates again.
	dropRE   = regexp.MustCompile(`\bdrop (\w+)(?: if exists)?(?: (\w+))?`)
	renameRE = regexp.MustCompile(`\brename\b`)
	// a column's type changed, or made NOT NULL after the fact.
	alterColumnRE = regexp.MustCompile(`\balter (?:column )?\S+ (?:set data )?type\b|\bset not null\b`)
	addColumnRE   = regexp.MustCompile(`^alter table .* add\b`)
)

// ExpandOnly returns an error naming each statement of m that an older
// binary may not tolerate while it still serves beside the new one during
// a deploy (the new process migrates before the old one drains): dropping
// a table, a column, a view or a default, renaming anything, changing a
// column's type, making a column NOT NULL, or adding a NOT NULL column
// without a default, which the old binary's inserts do not fill. A
// migration that carries ContractMark is exempt. It reads the SQL as
// text, statement by statement; it is a lint, not a parser.
func ExpandOnly(m Migration) error {
	if strings.Contains(m.SQL, "\n"+ContractMark) || strings.HasPrefix(m.SQL, ContractMark) {
		return nil
	}
	var found []string
	all := strings.ToLower(strings.Join(strings.Fields(stripComments(m.SQL)), " "))
	for stmt := range strings.SplitSeq(all, ";") {
		s := strings.TrimSpace(stmt)
		if s != "" && contracts(s, all) {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("migration %s contracts the schema, which the previous release, still serving during a deploy, may not tolerate: %q (expand now, contract a release later in a migration marked %q)",
		m.ID(), found, ContractMark)
}

// contracts reports whether the statement s of the migration all
// (both lowercase, spaces collapsed) contracts the schema.
func contracts(s, all string) bool {
	for _, d := range dropRE.FindAllStringSubmatch(s, -1) {
		switch kind, name := d[1], d[2]; {
		case kind == "index", kind == "not" && name == "null":
		case (kind == "trigger" || kind == "view" || kind == "function") && name != "" &&
			(strings.Contains(all, "create "+kind+" "+name) || strings.Contains(all, "create or replace "+kind+" "+name)):
		default:
			return true
		}
	}
	if renameRE.MatchString(s) || alterColumnRE.MatchString(s) {
		return true
	}
	return addColumnRE.MatchString(s) && strings.Contains(s, " not null") && !strings.Contains(s, " default ")
}

// stripComments removes "--" comments to the end of their line.
func stripComments(sql string) string {
	var b strings.Builder
	for line := range strings.Lines(sql) {
		code, _, found := strings.Cut(line, "--")
		b.WriteString(code)
		if found {
			b.WriteString("\n")
		}
	}
	return b.String()
}
