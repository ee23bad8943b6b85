// `vault exec` through the agent, from the launcher, without node (agent_client.c).
#ifndef SEALVAULT_AGENT_CLIENT_H
#define SEALVAULT_AGENT_CLIENT_H

// agent_exec's answer when the run is node's to do: another form of the command, no agent, a
// command not found, an agent that holds another vault. Nothing has run then.
#define AGENT_NOT_USED (-1)

// Runs `vault exec` (argv as the launcher got it) through the agent, with `env` (the environment
// node would get: the launcher's, without what loads code) as the client's. Returns the exit code
// `vault exec` exits with (the target's, or 125 after one line on stderr), or AGENT_NOT_USED.
int agent_exec(int argc, char **argv, char **env);

#endif
