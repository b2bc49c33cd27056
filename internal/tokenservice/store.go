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
// A write is staged under mu: validated against the committed token, its
// idempotency record put in flight. It is committed with bolt's Batch after mu is
// released, which folds concurrent commits into one fsync, and a method returns only
// after its commit. Then, under mu again, memory adopts the write, or, when the
// commit failed, the write's only trace (its idempotency record) is undone, so a
// failed commit leaves the store as it was (see transact).
//
// Readers see committed tokens only: a GET, a verify or the credentials never show a
// version that a failed commit could take back. Writes to one token wait for each
// other (writing, idle), so each is staged on the committed version and none builds
// on a change that is then undone; writes to different tokens still share fsyncs.
type store struct {
	catalog Catalog // validates tokens; never changes

	mu           sync.Mutex
	tokens       map[string]*record // committed versions only
	byExternalID map[string]map[string]struct{}
	idempotency  map[string]*idempotencyRecord
	revision     uint64
	// writing holds the SIDs with a staged write whose commit has not ended; idle
	// is broadcast (with mu as its lock) when one ends.
	writing map[string]struct{}
	idle    sync.Cond

	db *bolt.DB
	// beforeCommit, set only by tests, runs before each commit; an error from it is a
	// failed commit, and blocking in it holds a write in flight.
	beforeCommit func() error
}

// pendingWrite is one key to commit: a token (nil value = deleted) or an
// idempotency record.
type pendingWrite struct {
	bucket   []byte
	key      string
	value    []byte
	revision uint64
}

// staged is a write made under mu that memory adopts only once it is committed.
type staged struct {
	writes []pendingWrite
	// sid is the token written and token its new version, nil when it is deleted.
	sid   string
	token *record
	// idem is the record of a create or reset under idemKey, in flight until the
	// commit ends.
	idemKey string
	idem    *idempotencyRecord
}

func openStore(path string, c Catalog, now time.Time) (*store, error) {
	s := &store{
		catalog:      c,
		tokens:       map[string]*record{},
		byExternalID: map[string]map[string]struct{}{},
		idempotency:  map[string]*idempotencyRecord{},
		writing:      map[string]struct{}{},
	}
	s.idle.L = &s.mu
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
// the caller holds mu. A failed commit does not give its revision back, so an ETag
// never names two versions.
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

// transact runs one write: stage, called under mu once no other write to sid (empty
// for a new token) is in flight, validates and returns the write, or nil for one that
// changes nothing; the write is committed after mu is released, then adopted or
// undone (finish).
func (s *store) transact(sid string, stage func() (*staged, error)) error {
	w, err := s.stage(sid, stage)
	if err != nil || w == nil {
		return err
	}
	err = s.commit(w.writes...)
	s.finish(w, err)
	if err != nil {
		return fmt.Errorf("%w: %w", errCommit, err)
	}
	return nil
}

func (s *store) stage(sid string, stage func() (*staged, error)) (*staged, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.isWriting(sid) {
		s.idle.Wait()
	}
	w, err := stage()
	if err != nil || w == nil {
		return nil, err
	}
	s.writing[w.sid] = struct{}{}
	if w.idem != nil {
		s.idempotency[w.idemKey] = w.idem // a replay meanwhile is errInFlight
	}
	return w, nil
}

func (s *store) isWriting(sid string) bool {
	_, ok := s.writing[sid] // never "", the SID of a token not yet made
	return ok
}

// finish ends a write. Committed, it replaces the token in memory and settles its
// idempotency record. Not committed, it leaves no trace: its record goes, so that a
// retry with the same key acts afresh, and the token was never replaced. Either way
// the writes waiting for the token go on.
func (s *store) finish(w *staged, commitErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.writing, w.sid)
	s.idle.Broadcast()
	if commitErr != nil {
		if w.idem != nil && s.idempotency[w.idemKey] == w.idem {
			delete(s.idempotency, w.idemKey)
		}
		return
	}
	if w.idem != nil {
		w.idem.inFlight = false
	}
	if old, ok := s.tokens[w.sid]; ok {
		s.removeToken(old) // its external id may have changed (a claim)
	}
	if w.token != nil {
		s.putToken(w.token)
	}
}

// commit makes writes durable. Without a database it returns at once.
func (s *store) commit(writes ...pendingWrite) error {
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			return err
		}
	}
	if s.db == nil || len(writes) == 0 {
		return nil
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		for _, w := range writes {
			b := tx.Bucket(w.bucket)
			if string(w.bucket) == string(bucketTokens) {
				// Writes to one token wait for each other, so its versions land in
				// order; the check keeps an older one from ever replacing a newer
				// one should that change.
				if old := b.Get([]byte(w.key)); old != nil {
					if rev, _ := splitRevision(old); rev >= w.revision {
						continue
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
