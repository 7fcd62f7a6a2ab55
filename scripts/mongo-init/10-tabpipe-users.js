// Run by the mongo image (mongosh, as the root user) once, when the mongo-data volume is new.
// Creates the train job's user: it can only READ the `tabpipe` database (a mongodb source).
// Seed data with the root account from the host instead (docs/deploy.md, "Local stack").
const user = process.env.MONGO_TRAIN_USER;
const pwd = process.env.MONGO_TRAIN_PASSWORD;
if (!user || !pwd) {
  throw new Error("MONGO_TRAIN_USER and MONGO_TRAIN_PASSWORD must be set (see .env.example)");
}
db.getSiblingDB("tabpipe").createUser({ user: user, pwd: pwd, roles: [{ role: "read", db: "tabpipe" }] });
print(`created MongoDB user ${user} (read on tabpipe)`);
