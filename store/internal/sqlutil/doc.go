// Package sqlutil holds what store/sqlite and store/postgres do the same
// way: loading the embedded migrations, reading rows, and the variants
// column's JSON. SQL text and anything a dialect decides stay in each
// store.
package sqlutil
