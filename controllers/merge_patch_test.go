package controllers

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// TestObjectMergePatch: applied to before, the patch gives after, for the
// changes a status goes through; and it holds only what changed.
func TestObjectMergePatch(t *testing.T) {
	cases := []struct {
		name, before, after, want string
	}{
		{"unchanged", `{"a":1,"b":[1,2]}`, `{"a":1,"b":[1,2]}`, `{}`},
		{"a member set", `{"a":1}`, `{"a":1,"b":"x"}`, `{"b":"x"}`},
		{"a member changed", `{"a":1,"b":"x"}`, `{"a":2,"b":"x"}`, `{"a":2}`},
		{"a member dropped (omitempty)", `{"a":1,"b":"x"}`, `{"a":1}`, `{"b":null}`},
		{"an array replaced whole", `{"c":[{"type":"Ready","status":"False"}]}`, `{"c":[{"type":"Ready","status":"True"}]}`, `{"c":[{"type":"Ready","status":"True"}]}`},
		{"a nested object, member by member", `{"o":{"x":1,"y":2}}`, `{"o":{"x":1,"z":3}}`, `{"o":{"y":null,"z":3}}`},
		{"a nested object unchanged in a changed parent", `{"o":{"x":1},"a":1}`, `{"o":{"x":1},"a":2}`, `{"a":2}`},
		{"an object replacing a value", `{"o":"s"}`, `{"o":{"x":1}}`, `{"o":{"x":1}}`},
		{"everything dropped", `{"a":1,"o":{"x":1}}`, `{}`, `{"a":null,"o":null}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			patch, err := objectMergePatch([]byte(c.before), []byte(c.after))
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, patch, []byte(c.want)) {
				t.Errorf("patch %s, want %s", patch, c.want)
			}
			applied, err := jsonpatch.MergePatch([]byte(c.before), patch)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, applied, []byte(c.after)) {
				t.Errorf("before + patch = %s, want %s", applied, c.after)
			}
		})
	}
	if _, err := objectMergePatch([]byte(`[1]`), []byte(`{}`)); err == nil {
		t.Error("a status that is not an object is an error")
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
