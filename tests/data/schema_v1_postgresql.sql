-- Schema revision 1 (0001_initial) exactly as bot/store/schema.py created it with
-- metadata.create_all before migrations existed (postgresql). Frozen: never regenerate.

CREATE TABLE auto_deploys (
	repo VARCHAR(255) NOT NULL,
	env VARCHAR(255) NOT NULL,
	sha VARCHAR(64) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (repo, env, sha)
);

CREATE TABLE deploys (
	id SERIAL NOT NULL,
	repo VARCHAR(255) NOT NULL,
	env VARCHAR(255) NOT NULL,
	ref VARCHAR(255) NOT NULL,
	sha VARCHAR(64) NOT NULL,
	requested_by VARCHAR(255) NOT NULL,
	source VARCHAR(20) NOT NULL,
	state VARCHAR(20) NOT NULL,
	force BOOLEAN NOT NULL,
	github_deployment_id BIGINT,
	channel VARCHAR(255),
	message_ts VARCHAR(64),
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE,
	finished_at TIMESTAMP WITH TIME ZONE,
	error TEXT,
	cancel_requested BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_deploys_repo_env_id ON deploys (repo, env, id);

CREATE INDEX ix_deploys_state_id ON deploys (state, id);

CREATE UNIQUE INDEX ux_deploys_active_sha ON deploys (repo, env, sha) WHERE state IN ('queued', 'running');

CREATE UNIQUE INDEX ux_deploys_running_env ON deploys (repo, env) WHERE state = 'running';

CREATE TABLE heads (
	repo VARCHAR(255) NOT NULL,
	sha VARCHAR(64) NOT NULL,
	etag VARCHAR(255),
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (repo)
);

CREATE TABLE locks (
	repo VARCHAR(255) NOT NULL,
	env VARCHAR(255) NOT NULL,
	locked_by VARCHAR(255) NOT NULL,
	reason TEXT NOT NULL,
	locked_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (repo, env)
);

CREATE TABLE deploy_logs (
	deploy_id INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	text TEXT NOT NULL,
	PRIMARY KEY (deploy_id, seq),
	FOREIGN KEY(deploy_id) REFERENCES deploys (id) ON DELETE CASCADE
);
