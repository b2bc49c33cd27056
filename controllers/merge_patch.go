package controllers

import (
	"bytes"
	"errors"
)

// objectMergePatch is the JSON merge patch (RFC 7386) from one JSON object to
// another, both as json.Marshal writes them (no whitespace): the members of
// after that differ, objects compared member by member, and null for the
// members after lacks; arrays and other values are replaced whole, as in any
// merge patch. It is json-patch's CreateMergePatch for a status write without
// decoding either side: decoded into trees of interfaces (json-patch), or even
// into maps of raw members, the two statuses were most of the allocations of a
// status write, and so of the garbage collection it costs (make bench).
func objectMergePatch(before, after []byte) ([]byte, error) {
	var patch bytes.Buffer
	if err := writeMergePatch(&patch, before, after); err != nil {
		return nil, err
	}
	return patch.Bytes(), nil
}

// jsonMember is one member of a JSON object: its key (quoted, as written) and
// its value.
type jsonMember struct{ key, value []byte }

var errNotJSONObject = errors.New("merge patch: not a JSON object as json.Marshal writes it")

// writeMergePatch appends the merge patch from before to after to out.
func writeMergePatch(out *bytes.Buffer, before, after []byte) error {
	was, err := jsonMembers(before)
	if err != nil {
		return err
	}
	is, err := jsonMembers(after)
	if err != nil {
		return err
	}
	out.WriteByte('{')
	first := true
	member := func(key []byte) {
		if !first {
			out.WriteByte(',')
		}
		first = false
		out.Write(key)
		out.WriteByte(':')
	}
	for _, m := range is {
		old, found := memberValue(was, m.key)
		switch {
		case found && bytes.Equal(old, m.value):
		case found && isJSONObject(old) && isJSONObject(m.value):
			mark, wasFirst := out.Len(), first
			member(m.key)
			nested := out.Len()
			if err := writeMergePatch(out, old, m.value); err != nil {
				return err
			}
			if out.Len()-nested == 2 { // {}: nothing changed inside
				out.Truncate(mark)
				first = wasFirst
			}
		default:
			member(m.key)
			out.Write(m.value)
		}
	}
	for _, m := range was {
		if _, found := memberValue(is, m.key); !found {
			member(m.key)
			out.WriteString("null")
		}
	}
	out.WriteByte('}')
	return nil
}

func memberValue(members []jsonMember, key []byte) ([]byte, bool) {
	for _, m := range members {
		if bytes.Equal(m.key, key) {
			return m.value, true
		}
	}
	return nil, false
}

func isJSONObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }

// jsonMembers splits an object into its members (a status has a dozen, so a
// slice searched in order beats a map).
func jsonMembers(obj []byte) ([]jsonMember, error) {
	var members []jsonMember
	err := eachJSONMember(obj, func(key, value []byte) {
		members = append(members, jsonMember{key: key, value: value})
	})
	if err != nil {
		return nil, err
	}
	return members, nil
}

// eachJSONMember calls member with each member of the JSON object obj, in
// order, its key and value slices of obj; it allocates nothing.
func eachJSONMember(obj []byte, member func(key, value []byte)) error {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return errNotJSONObject
	}
	for i := 1; i < len(obj)-1; {
		keyEnd, err := skipJSONValue(obj, i)
		if err != nil || obj[i] != '"' || keyEnd >= len(obj) || obj[keyEnd] != ':' {
			return errNotJSONObject
		}
		valueEnd, err := skipJSONValue(obj, keyEnd+1)
		if err != nil {
			return err
		}
		member(obj[i:keyEnd], obj[keyEnd+1:valueEnd])
		switch {
		case valueEnd == len(obj)-1:
			i = valueEnd
		case obj[valueEnd] == ',':
			i = valueEnd + 1
		default:
			return errNotJSONObject
		}
	}
	return nil
}

// skipJSONValue returns where the value that starts at b[i] ends.
func skipJSONValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errNotJSONObject
	}
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			end, err := skipJSONString(b, j)
			if err != nil {
				return 0, err
			}
			if depth == 0 {
				return end, nil
			}
			j = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j, nil // the end of a scalar at the end of its container
			}
			if depth--; depth == 0 {
				return j + 1, nil
			}
		case ',':
			if depth == 0 {
				return j, nil
			}
		}
	}
	if depth == 0 {
		return len(b), nil
	}
	return 0, errNotJSONObject
}

// skipJSONString returns where the string that starts at b[i] (a quote) ends.
func skipJSONString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errNotJSONObject
}
