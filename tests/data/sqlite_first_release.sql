-- A task database as the first release of videoq made it (before the own_key column).
CREATE TABLE video_tasks (id TEXT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL, aspect_ratio TEXT NOT NULL, duration INTEGER NOT NULL, hd INTEGER NOT NULL, images TEXT NOT NULL, status TEXT NOT NULL, progress INTEGER NOT NULL, attempt INTEGER NOT NULL, upstream_task_id TEXT, video_url TEXT, error_message TEXT, message_id TEXT, polls INTEGER NOT NULL, upstream_status TEXT, last_polled_at TEXT, next_poll_at TEXT, step_lease_until TEXT, upstream_key_ciphertext TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, queued_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, version INTEGER NOT NULL);
CREATE INDEX video_tasks_created ON video_tasks (created_at DESC, id DESC);
CREATE INDEX video_tasks_status ON video_tasks (status, created_at DESC, id DESC);
CREATE INDEX video_tasks_user ON video_tasks (user_id, created_at DESC, id DESC);
CREATE INDEX video_tasks_status_updated ON video_tasks (status, updated_at);
CREATE TABLE task_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, kind TEXT NOT NULL, attempt INTEGER NOT NULL, at TEXT NOT NULL, from_status TEXT, to_status TEXT, actor TEXT, upstream_status TEXT, progress INTEGER, http_status INTEGER, latency_ms REAL, detail TEXT);
CREATE INDEX task_events_task ON task_events (task_id, id);
CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL, op TEXT NOT NULL, origin TEXT NOT NULL, at REAL NOT NULL);

-- Two tasks as the first release wrote them: one queued with the user's own upstream key (only a
-- note on its first event says so), one with the server's key; both failed, the key erased.
INSERT INTO video_tasks VALUES ('1b7a2c1e-0000-4000-8000-000000000001', 'user-1', 't8star',
    'sora-2', 'a fox in the snow', '16:9', 10, 0, '[]', 'failed', 0, 1, NULL, NULL,
    'upstream refused', NULL, 0, NULL, NULL, NULL, NULL, NULL,
    '2025-03-01T12:00:00.000000+00:00', '2025-03-01T12:01:00.000000+00:00',
    '2025-03-01T12:00:00.000000+00:00', NULL, '2025-03-01T12:01:00.000000+00:00', 2);
INSERT INTO video_tasks VALUES ('2c8b3d2f-0000-4000-8000-000000000002', 'user-1', 't8star',
    'sora-2', 'a cat on a roof', '16:9', 10, 0, '[]', 'failed', 0, 1, NULL, NULL,
    'upstream refused', NULL, 0, NULL, NULL, NULL, NULL, NULL,
    '2025-03-01T12:00:01.000000+00:00', '2025-03-01T12:01:01.000000+00:00',
    '2025-03-01T12:00:01.000000+00:00', NULL, '2025-03-01T12:01:01.000000+00:00', 2);
INSERT INTO task_events (task_id, kind, attempt, at, to_status, actor, detail) VALUES
    ('1b7a2c1e-0000-4000-8000-000000000001', 'transition', 1,
     '2025-03-01T12:00:00.000000+00:00', 'queued', 'api:user-1',
     'with the user''s own upstream key'),
    ('2c8b3d2f-0000-4000-8000-000000000002', 'transition', 1,
     '2025-03-01T12:00:01.000000+00:00', 'queued', 'api:user-1', NULL);
