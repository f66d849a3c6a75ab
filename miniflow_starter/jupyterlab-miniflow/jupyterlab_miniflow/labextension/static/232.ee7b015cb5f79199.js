"use strict";(self.rspackChunkjupyterlab_miniflow=self.rspackChunkjupyterlab_miniflow||[]).push([[232],{19(e,o,t){var r=t(20),n=t.n(r),i=t(21),a=(t.n(i))()(n());a.push([e.id,`.jp-miniflow-panel {
  padding: 8px;
  overflow-y: auto;
  font-size: var(--jp-ui-font-size1);
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
}

.jp-miniflow-header {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  align-items: center;
}

.jp-miniflow-title {
  flex: 1 0 100%;
  margin: 0 0 4px;
  font-size: var(--jp-ui-font-size2);
}

.jp-miniflow-state {
  min-height: 1.4em;
  color: var(--jp-ui-font-color2);
  font-style: italic;
}

.jp-miniflow-problem {
  color: var(--jp-error-color1);
  margin: 4px 0;
}

.jp-miniflow-progress {
  display: flex;
  flex-direction: column;
  gap: 2px;
  margin-bottom: 8px;
}

.jp-miniflow-progress progress {
  width: 100%;
}

.jp-miniflow-notebook-title {
  display: flex;
  justify-content: space-between;
  margin: 8px 0 2px;
  font-size: var(--jp-ui-font-size1);
}

.jp-miniflow-exercises {
  list-style: none;
  margin: 0;
  padding: 0;
}

.jp-miniflow-exercise,
.jp-miniflow-stub {
  padding: 3px 4px;
  border-left: 3px solid var(--jp-border-color2);
  margin-bottom: 2px;
  cursor: pointer;
}

.jp-miniflow-exercise:hover,
.jp-miniflow-stub:hover {
  background: var(--jp-layout-color2);
}

.jp-miniflow-exercise-line {
  display: flex;
  flex-wrap: wrap;
  gap: 0 6px;
}

.jp-miniflow-exercise-title {
  flex: 1 1 100%;
  font-weight: 600;
}

.jp-miniflow-status {
  flex: 1;
}

.jp-miniflow-points {
  color: var(--jp-ui-font-color2);
}

.jp-miniflow-exercise[data-status='passed'] {
  border-left-color: var(--jp-success-color1);
}

.jp-miniflow-exercise[data-status='failing'] {
  border-left-color: var(--jp-error-color1);
}

.jp-miniflow-exercise[data-status='not implemented'] {
  border-left-color: var(--jp-warn-color1);
}

.jp-miniflow-exercise[data-status='passed'] .jp-miniflow-status {
  color: var(--jp-success-color1);
}

.jp-miniflow-exercise[data-status='failing'] .jp-miniflow-status {
  color: var(--jp-error-color1);
}

.jp-miniflow-message {
  color: var(--jp-ui-font-color2);
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-ui-font-size0);
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}

.jp-Cell.jp-miniflow-highlight {
  outline: 2px solid var(--jp-brand-color1);
  transition: outline-color 0.5s;
}

.jp-miniflow-tests {
  list-style: none;
  margin: 2px 0 0;
  padding: 0 0 0 6px;
}

.jp-miniflow-test-title {
  flex: 1 1 100%;
}
`,""]),t.d(o,{},{A:a})},21(e){e.exports=function(e){var o=[];return o.toString=function(){return this.map(function(o){var t="",r=void 0!==o[5];return o[4]&&(t+="@supports (".concat(o[4],") {")),o[2]&&(t+="@media ".concat(o[2]," {")),r&&(t+="@layer".concat(o[5].length>0?" ".concat(o[5]):""," {")),t+=e(o),r&&(t+="}"),o[2]&&(t+="}"),o[4]&&(t+="}"),t}).join("")},o.i=function(e,t,r,n,i){"string"==typeof e&&(e=[[null,e,void 0]]);var a={};if(r)for(var s=0;s<this.length;s++){var l=this[s][0];null!=l&&(a[l]=!0)}for(var p=0;p<e.length;p++){var c=[].concat(e[p]);r&&a[c[0]]||(void 0!==i&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=i),t&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=t),n&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=n):c[4]="".concat(n)),o.push(c))}},o}},20(e){e.exports=function(e){return e[1]}},13(e){var o=[];function t(e){for(var t=-1,r=0;r<o.length;r++)if(o[r].identifier===e){t=r;break}return t}function r(e,r){for(var n={},i=[],a=0;a<e.length;a++){var s=e[a],l=r.base?s[0]+r.base:s[0],p=n[l]||0,c="".concat(l," ").concat(p);n[l]=p+1;var f=t(c),u={css:s[1],media:s[2],sourceMap:s[3],supports:s[4],layer:s[5]};if(-1!==f)o[f].references++,o[f].updater(u);else{var d=function(e,o){var t=o.domAPI(o);return t.update(e),function(o){o?(o.css!==e.css||o.media!==e.media||o.sourceMap!==e.sourceMap||o.supports!==e.supports||o.layer!==e.layer)&&t.update(e=o):t.remove()}}(u,r);r.byIndex=a,o.splice(a,0,{identifier:c,updater:d,references:1})}i.push(c)}return i}e.exports=function(e,n){var i=r(e=e||[],n=n||{});return function(e){e=e||[];for(var a=0;a<i.length;a++){var s=t(i[a]);o[s].references--}for(var l=r(e,n),p=0;p<i.length;p++){var c=t(i[p]);0===o[c].references&&(o[c].updater(),o.splice(c,1))}i=l}}},15(e){var o={};e.exports=function(e,t){var r=function(e){if(void 0===o[e]){var t=document.querySelector(e);if(window.HTMLIFrameElement&&t instanceof window.HTMLIFrameElement)try{t=t.contentDocument.head}catch(e){t=null}o[e]=t}return o[e]}(e);if(!r)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");r.appendChild(t)}},17(e){e.exports=function(e){var o=document.createElement("style");return e.setAttributes(o,e.attributes),e.insert(o,e.options),o}},16(e,o,t){e.exports=function(e){var o=t.nc;o&&e.setAttribute("nonce",o)}},14(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var o=e.insertStyleElement(e);return{update:function(t){var r,n,i;r="",t.supports&&(r+="@supports (".concat(t.supports,") {")),t.media&&(r+="@media ".concat(t.media," {")),(n=void 0!==t.layer)&&(r+="@layer".concat(t.layer.length>0?" ".concat(t.layer):""," {")),r+=t.css,n&&(r+="}"),t.media&&(r+="}"),t.supports&&(r+="}"),(i=t.sourceMap)&&"u">typeof btoa&&(r+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(i))))," */")),e.styleTagTransform(r,o,e.options)},remove:function(){var e;null===(e=o).parentNode||e.parentNode.removeChild(e)}}}},18(e){e.exports=function(e,o){if(o.styleSheet)o.styleSheet.cssText=e;else{for(;o.firstChild;)o.removeChild(o.firstChild);o.appendChild(document.createTextNode(e))}}},12(e,o,t){var r=t(13),n=t.n(r),i=t(14),a=t.n(i),s=t(15),l=t.n(s),p=t(16),c=t.n(p),f=t(17),u=t.n(f),d=t(18),m=t.n(d),v=t(19),j={};j.styleTagTransform=m(),j.setAttributes=c(),j.insert=l().bind(null,"head"),j.domAPI=a(),j.insertStyleElement=u(),n()(v.A,j),v.A&&v.A.locals&&v.A.locals}}]);