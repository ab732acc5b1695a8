-- A history database at schema version 5, as archagent wrote it with pre-training measurements. Frozen: never edit.
-- tests/agent/test_history.py loads it and checks the upgrade to the current schema keeps every row.
CREATE TABLE meta (
  key VARCHAR NOT NULL,
  value VARCHAR,
  PRIMARY KEY (key)
);
CREATE TABLE runs (
  run_id VARCHAR NOT NULL,
  task VARCHAR NOT NULL,
  space VARCHAR NOT NULL,
  proposer VARCHAR NOT NULL,
  seed BIGINT NOT NULL,
  budget BIGINT NOT NULL,
  status VARCHAR NOT NULL,
  config JSON,
  created TIMESTAMP NOT NULL,
  finished TIMESTAMP,
  summary JSON,
  host VARCHAR,
  pid BIGINT,
  PRIMARY KEY (run_id)
);
CREATE TABLE candidates (
  candidate_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  seq BIGINT NOT NULL,
  space VARCHAR NOT NULL,
  spec JSON NOT NULL,
  canonical_key VARCHAR,
  parents JSON NOT NULL,
  proposer VARCHAR NOT NULL,
  model VARCHAR,
  rationale VARCHAR,
  prompt_ref VARCHAR,
  status VARCHAR NOT NULL,
  error VARCHAR,
  created TIMESTAMP NOT NULL,
  updated TIMESTAMP NOT NULL,
  measurements JSON,
  PRIMARY KEY (candidate_id)
);
CREATE INDEX idx_candidates_run_id ON candidates (run_id);
CREATE TABLE evaluations (
  evaluation_id VARCHAR NOT NULL,
  candidate_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  purpose VARCHAR NOT NULL,
  status VARCHAR NOT NULL,
  fidelity DOUBLE,
  fidelity_unit VARCHAR NOT NULL,
  val_accuracy DOUBLE,
  test_accuracy DOUBLE,
  metrics JSON NOT NULL,
  source VARCHAR,
  wall_seconds DOUBLE NOT NULL,
  device_seconds DOUBLE NOT NULL,
  error VARCHAR,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (evaluation_id)
);
CREATE INDEX idx_evaluations_candidate_id ON evaluations (candidate_id);
CREATE TABLE curves (
  evaluation_id VARCHAR NOT NULL,
  candidate_id VARCHAR NOT NULL,
  epoch DOUBLE NOT NULL,
  val_accuracy DOUBLE,
  train_loss DOUBLE,
  val_loss DOUBLE,
  train_accuracy DOUBLE,
  PRIMARY KEY (evaluation_id, epoch)
);
CREATE TABLE events (
  event_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  candidate_id VARCHAR,
  kind VARCHAR NOT NULL,
  time TIMESTAMP NOT NULL,
  payload JSON NOT NULL,
  PRIMARY KEY (event_id)
);
CREATE TABLE llm_calls (
  call_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  candidate_id VARCHAR,
  proposal VARCHAR,
  attempt BIGINT NOT NULL,
  backend VARCHAR NOT NULL,
  model VARCHAR NOT NULL,
  template VARCHAR NOT NULL,
  messages JSON NOT NULL,
  response VARCHAR NOT NULL,
  mode VARCHAR,
  tokens_in BIGINT NOT NULL,
  tokens_out BIGINT NOT NULL,
  seconds DOUBLE NOT NULL,
  cost DOUBLE,
  retries BIGINT NOT NULL,
  outcome VARCHAR NOT NULL,
  error VARCHAR,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (call_id)
);
CREATE INDEX idx_llm_calls_run_id ON llm_calls (run_id);
CREATE INDEX idx_llm_calls_candidate_id ON llm_calls (candidate_id);
CREATE TABLE insights (
  insight_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  reflection VARCHAR NOT NULL,
  position BIGINT NOT NULL,
  after_evaluations BIGINT NOT NULL,
  text VARCHAR NOT NULL,
  call_id VARCHAR,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (insight_id)
);
CREATE INDEX idx_insights_run_id ON insights (run_id);
CREATE TABLE forecasts (
  run_id VARCHAR NOT NULL,
  candidate_id VARCHAR NOT NULL,
  epoch DOUBLE NOT NULL,
  final_epoch DOUBLE NOT NULL,
  method VARCHAR NOT NULL,
  reference_curves BIGINT NOT NULL,
  last_value DOUBLE NOT NULL,
  mean DOUBLE NOT NULL,
  lower DOUBLE NOT NULL,
  median DOUBLE NOT NULL,
  upper DOUBLE NOT NULL,
  incumbent DOUBLE,
  p_beat DOUBLE NOT NULL,
  action VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (candidate_id, epoch)
);
CREATE INDEX idx_forecasts_run_id ON forecasts (run_id);
INSERT INTO meta VALUES ('created', '2026-11-22T12:00:00+00:00');
INSERT INTO meta VALUES ('schema_version', '5');
INSERT INTO runs VALUES ('20261122-120000-aaaaaa', 'nb201-cifar10', 'nb201', 'evolution', 0, 2, 'done', '{"seed": 0}', TIMESTAMP '2026-11-22 12:00:00', TIMESTAMP '2026-11-22 12:00:05', '{"best": {"candidate_id": "20261122-120000-aaaaaa-c0000"}}', 'host', 1234);
INSERT INTO candidates VALUES ('20261122-120000-aaaaaa-c0000', '20261122-120000-aaaaaa', 0, 'nb201', '{"edge_1_0": "nor_conv_3x3", "edge_2_0": "nor_conv_3x3", "edge_2_1": "nor_conv_3x3", "edge_3_0": "skip_connect", "edge_3_1": "nor_conv_3x3", "edge_3_2": "skip_connect"}', '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|', '[]', 'evolution', NULL, 'initial population: random sample', NULL, 'ok', NULL, TIMESTAMP '2026-11-22 12:00:01', TIMESTAMP '2026-11-22 12:00:02', NULL);
INSERT INTO candidates VALUES ('20261122-120000-aaaaaa-c0001', '20261122-120000-aaaaaa', 1, 'nb201', '{"raw": "42"}', NULL, '[]', 'evolution', NULL, NULL, NULL, 'invalid', 'a nb201 spec must be a JSON object, got int', TIMESTAMP '2026-11-22 12:00:03', TIMESTAMP '2026-11-22 12:00:03', NULL);
INSERT INTO candidates VALUES ('20261122-120000-aaaaaa-c0002', '20261122-120000-aaaaaa', 2, 'layers', '{"stem": {"channels": 8}, "stages": []}', 'layers-key-2', '[]', 'evolution', NULL, NULL, NULL, 'stopped_early', 'stopped early after epoch 1 of 15', TIMESTAMP '2026-11-22 12:00:04', TIMESTAMP '2026-11-22 12:00:05', NULL);
INSERT INTO candidates VALUES ('20261122-120000-aaaaaa-c0003', '20261122-120000-aaaaaa', 3, 'nb201', '{"edge_1_0": "nor_conv_3x3", "edge_2_0": "none", "edge_2_1": "nor_conv_3x3", "edge_3_0": "skip_connect", "edge_3_1": "nor_conv_1x1", "edge_3_2": "nor_conv_3x3"}', '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|', '[]', 'evolution', NULL, NULL, NULL, 'invalid', 'batch-1 latency 2.1 ms exceeds --max-latency-ms 1', TIMESTAMP '2026-12-07 12:18:06.458643', TIMESTAMP '2026-12-07 12:18:06.458643', '{"flops": 34000, "latency_ms": 2.1, "params": 1200, "proxy_synflow": 3.5}');
INSERT INTO evaluations VALUES ('20261122-120000-aaaaaa-c0000-search-0a0a0a0a', '20261122-120000-aaaaaa-c0000', '20261122-120000-aaaaaa', 'search', 'ok', 12.0, 'epochs', 0.85, NULL, '{}', 'nb201_12epoch_accuracy.csv: cifar10-val', 0.001, 0.0, NULL, TIMESTAMP '2026-11-22 12:00:02');
INSERT INTO evaluations VALUES ('20261122-120000-aaaaaa-c0000-final-0b0b0b0b', '20261122-120000-aaaaaa-c0000', '20261122-120000-aaaaaa', 'final', 'ok', 12.0, 'epochs', 0.85, 0.9437, '{}', '200-epoch test accuracy from nb201_cifar10_200epoch_test.csv', 0.001, 0.0, NULL, TIMESTAMP '2026-11-22 12:00:04');
INSERT INTO evaluations VALUES ('20261122-120000-aaaaaa-c0002-search-0c0c0c0c', '20261122-120000-aaaaaa-c0002', '20261122-120000-aaaaaa', 'search', 'stopped_early', 1.0, 'epochs', NULL, NULL, '{"params": 1234}', 'trained on cpu', 2.5, 2.0, 'stopped early after epoch 1 of 15', TIMESTAMP '2026-11-22 12:00:05');
INSERT INTO curves VALUES ('20261122-120000-aaaaaa-c0000-search-0a0a0a0a', '20261122-120000-aaaaaa-c0000', 12.0, 0.85, NULL, NULL, NULL);
INSERT INTO curves VALUES ('20261122-120000-aaaaaa-c0002-search-0c0c0c0c', '20261122-120000-aaaaaa-c0002', 1.0, 0.5, 1.2, NULL, 0.45);
INSERT INTO events VALUES ('e0', '20261122-120000-aaaaaa', NULL, 'run_started', TIMESTAMP '2026-11-22 12:00:00', '{"pid": 1234}');
INSERT INTO events VALUES ('e1', '20261122-120000-aaaaaa', NULL, 'run_finished', TIMESTAMP '2026-11-22 12:00:05', '{"status": "done"}');
INSERT INTO llm_calls VALUES ('20261122-120000-aaaaaa-pabc-a0', '20261122-120000-aaaaaa', NULL, '20261122-120000-aaaaaa-pabc', 0, 'local', 'qwen2.5-coder-0.5b-instruct-q4_k_m', 'propose.j2', '[{"role": "system", "content": "You design cells."}, {"role": "user", "content": "Propose one."}]', '{"rationale": "convs", "spec": {}}', 'grammar', 120, 30, 3.5, 0.0, 0, 'valid', NULL, TIMESTAMP '2026-11-22 12:00:01');
INSERT INTO insights VALUES ('20261122-120000-aaaaaa-r0002-0', '20261122-120000-aaaaaa', '20261122-120000-aaaaaa-r0002', 0, 2, 'convolutions beat pooling', NULL, TIMESTAMP '2026-11-22 12:00:04');
INSERT INTO forecasts VALUES ('20261122-120000-aaaaaa', '20261122-120000-aaaaaa-c0002', 1.0, 15.0, 'run-calibrated', 3, 0.5, 0.6, 0.55, 0.6, 0.65, 0.9, 0.01, 'stop', 'P(beat) < 0.05', TIMESTAMP '2026-11-22 12:00:05');
