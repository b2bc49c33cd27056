package tokenservice

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// IdempotencyTTL is how long a create or reset response is kept for replays.
const IdempotencyTTL = 24 * time.Hour

var (
	bucketTokens      = []byte("tokens")
	bucketIdempotency = []byte("idempotency")
)

// idempotencyRecord is the response to a request made with an Idempotency-Key.
type idempotencyRecord struct {
	BodyHash  string    `json:"bodyHash"`
	Status    int       `json:"status"`
	Body      []byte    `json:"body"`
	CreatedAt time.Time `json:"createdAt"`
	// inFlight is true until the response is durable; a replay meanwhile is 409.
	inFlight bool
}

// store keeps every token and idempotency record in memory, where reads are served,
// and writes each change through to a bbolt file when one is configured. Its
// exported methods (store_tokens.go) are its whole API.
//
// Changes are validated and made in memory under mu, then committed with bolt's Batch
// after mu is released, which folds concurrent commits into one fsync; a method
// returns only after its commit. Each stored token carries a global revision so that
// commits that land out of order never replace a newer version with an older one.
type store struct {
	catalog Catalog // validates tokens; never changes

	mu           sync.Mutex
	tokens       map[string]*record
	byExternalID map[string]map[string]struct{}
	idempotency  map[string]*idempotencyRecord
	revision     uint64

	db *bolt.DB
}

// pendingWrite is one key to commit: a token (nil value = deleted) or an
// idempotency record.
type pendingWrite struct {
	bucket   []byte
	key      string
	value    []byte
	revision uint64
}

func openStore(path string, c Catalog, now time.Time) (*store, error) {
	s := &store{
		catalog:      c,
		tokens:       map[string]*record{},
		byExternalID: map[string]map[string]struct{}{},
		idempotency:  map[string]*idempotencyRecord{},
	}
	if path == "" {
		return s, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// Batch folds concurrent commits; a short delay lets a busy server share fsyncs.
	db.MaxBatchDelay = 2 * time.Millisecond
	s.db = db
	if err := s.load(now); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *store) load(now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		tokens, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		idem, err := tx.CreateBucketIfNotExists(bucketIdempotency)
		if err != nil {
			return err
		}
		err = tokens.ForEach(func(k, v []byte) error {
			rev, body := splitRevision(v)
			s.revision = max(s.revision, rev)
			if len(body) == 0 {
				return nil // deleted
			}
			var r record
			if err := json.Unmarshal(body, &r); err != nil {
				return fmt.Errorf("decode token %s: %w", k, err)
			}
			s.putToken(&r)
			return nil
		})
		if err != nil {
			return err
		}
		var expired [][]byte
		err = idem.ForEach(func(k, v []byte) error {
			var r idempotencyRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode idempotency record: %w", err)
			}
			if now.Sub(r.CreatedAt) > IdempotencyTTL {
				expired = append(expired, k)
				return nil
			}
			s.idempotency[string(k)] = &r
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := idem.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) close() error {
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}

// putToken stores r in memory; the caller holds mu (or is loading).
func (s *store) putToken(r *record) {
	s.tokens[r.SID] = r
	if r.ExternalID != "" {
		set := s.byExternalID[r.ExternalID]
		if set == nil {
			set = map[string]struct{}{}
			s.byExternalID[r.ExternalID] = set
		}
		set[r.SID] = struct{}{}
	}
}

// removeToken deletes a token from memory; the caller holds mu.
func (s *store) removeToken(r *record) {
	delete(s.tokens, r.SID)
	if set := s.byExternalID[r.ExternalID]; set != nil {
		delete(set, r.SID)
		if len(set) == 0 {
			delete(s.byExternalID, r.ExternalID)
		}
	}
}

// tokenWrite bumps the revision of r (deleted = no body) and returns its commit;
// the caller holds mu.
func (s *store) tokenWrite(r *record, deleted bool) (pendingWrite, error) {
	s.revision++
	r.Revision = s.revision
	w := pendingWrite{bucket: bucketTokens, key: r.SID, revision: r.Revision}
	if !deleted {
		body, err := json.Marshal(r)
		if err != nil {
			return w, err
		}
		w.value = body
	}
	return w, nil
}

func idempotencyWrite(key string, r *idempotencyRecord) (pendingWrite, error) {
	body, err := json.Marshal(r)
	return pendingWrite{bucket: bucketIdempotency, key: key, value: body}, err
}

// commit makes writes durable. Without a database it returns at once.
func (s *store) commit(writes ...pendingWrite) error {
	if s.db == nil || len(writes) == 0 {
		return nil
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		for _, w := range writes {
			b := tx.Bucket(w.bucket)
			if string(w.bucket) == string(bucketTokens) {
				if old := b.Get([]byte(w.key)); old != nil {
					if rev, _ := splitRevision(old); rev >= w.revision {
						continue // a newer version already landed
					}
				}
				if err := b.Put([]byte(w.key), joinRevision(w.revision, w.value)); err != nil {
					return err
				}
				continue
			}
			if err := b.Put([]byte(w.key), w.value); err != nil {
				return err
			}
		}
		return nil
	})
}

// expireIdempotency forgets idempotency records older than the TTL.
func (s *store) expireIdempotency(now time.Time) error {
	keys := s.forgetExpired(now)
	if s.db == nil || len(keys) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdempotency)
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// forgetExpired removes the settled idempotency records older than the TTL from
// memory and returns their keys.
func (s *store) forgetExpired(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, r := range s.idempotency {
		if !r.inFlight && now.Sub(r.CreatedAt) > IdempotencyTTL {
			keys = append(keys, k)
			delete(s.idempotency, k)
		}
	}
	return keys
}

func joinRevision(rev uint64, body []byte) []byte {
	out := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint64(out, rev)
	return append(out, body...)
}

func splitRevision(v []byte) (uint64, []byte) {
	if len(v) < 8 {
		return 0, nil
	}
	return binary.BigEndian.Uint64(v[:8]), v[8:]
}
