-- One word for the kind of cloud drive, in the code, the API and the schema: "datasource"
-- (the first migrations called the column "provider").
ALTER TABLE oauth_states RENAME COLUMN provider TO datasource;
ALTER TABLE connections RENAME COLUMN provider TO datasource;
ALTER TABLE sources RENAME COLUMN provider TO datasource;
