// An imported stylesheet in a unit test: nothing to apply.
module.exports = {};
