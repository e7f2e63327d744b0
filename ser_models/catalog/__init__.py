"""The catalogue of jobs, read without importing them: the job table (each job's module, config class and
summary), the committed index of every job's keys that help is rendered from, and the shipped recipes. Base
layer: the config parser reads it, and starting help imports nothing heavy."""
