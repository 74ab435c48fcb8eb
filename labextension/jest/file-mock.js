// An imported SVG or image in a unit test: its markup is never looked at.
module.exports = '<svg xmlns="http://www.w3.org/2000/svg"></svg>';
